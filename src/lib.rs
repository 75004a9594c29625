//! graygate: a reverse-proxy API gateway for gray (canary) releases of function versions.
//!
//! The request path reads top to bottom: [`config`] (server settings) and [`routes`] (the
//! routing file) are validated, [`routing`] compiles them into an immutable table that
//! [`store`] publishes and [`reload`] keeps current, and [`proxy`] resolves each request and forwards it. [`admin`]
//! and [`metrics`] sit beside them; [`app`] wires the lifecycle together.

pub mod access_log;
pub mod admin;
pub mod app;
pub mod audit;
pub mod config;
pub mod demo;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod health;
pub mod metrics;
pub mod proxy;
pub mod reload;
pub mod routes;
pub mod routing;
pub mod secret;
pub mod store;
pub mod summary;
pub mod tls;

//! HTTP API tests: a real server on port 0 with its own catalog per test, on every backend.

#[path = "../common/mod.rs"]
mod common;

mod support;

mod audit;
mod auth;
mod basics;
mod canary;
mod errors;
mod fleet;
mod hardening;
mod input;
mod jobs;
mod replicas;
mod servers;
mod service;
mod tenant_detail;
mod tenants;
mod ui;

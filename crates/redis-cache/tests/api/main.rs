//! The HTTP API, end to end: the real service on a free port with its own
//! `redis-server` and its own database (SQLite file or PostgreSQL database).

mod helpers;

mod batch;
mod breaker;
mod cache_admin;
mod connections;
mod consistency;
mod dashboard;
mod database_outage;
mod durability;
mod expiry;
mod failsafe;
mod faults;
mod glob;
mod health;
mod invalidation;
mod items;
mod metrics;
mod near_cache;
mod openapi;
mod process;
mod redis_connection;
mod redis_permissions;
mod request_id;
mod stampede;
mod traces;
mod validation;
mod walkthrough;

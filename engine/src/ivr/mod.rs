//! IVR flows: the language admins write in YAML, its validator, and the interpreter that runs
//! a call through a flow.
//!
//! ```text
//! ivr-flows/*.yaml ──syntax (serde, spans)──▶ validate (all errors, file:line:column, node id)
//!                                             ──▶ model::Flow (references resolved to NodeIds)
//! model::Flow ──▶ interp::Interpreter::handle(event, now) ─▶ Vec<Action> (sans-IO; the call
//!                 executes the actions through media, HTTP and the ACD, and feeds back events)
//! ```
//! `model` is the contract between the three: nothing past validation holds a node name that
//! might not exist.
pub mod flowtest;
pub mod graph;
pub mod hours;
pub mod interp;
pub mod load;
pub mod model;
pub mod syntax;
pub mod validate;

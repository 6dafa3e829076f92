//! `pso._pso`: the Python binding of pso-core, imported as `pso`.
//!
//! A thin layer: it converts Python values to pso-core's model and back, maps
//! every core error to the Python exception of its kind (`error.rs`), and
//! manages the GIL: it is released around every call into core and taken back
//! on worker threads only to call a Python handler. Files mirror the core
//! modules they wrap: `orchestrator.rs`, `model.rs` (specs and handlers),
//! `lifecycle.rs` (reports, plans, transitions), `status.rs`.

#![forbid(unsafe_code)]

mod error;
mod lifecycle;
mod model;
mod orchestrator;
mod status;

use pyo3::prelude::*;

/// The native module behind the `pso` package.
#[pymodule]
mod _pso {
    #[pymodule_export]
    use super::lifecycle::{PyActivationReport, PyPlan, PySystemOutcome, PyTransition};
    #[pymodule_export]
    use super::orchestrator::PyOrchestrator;
    #[pymodule_export]
    use super::status::PySystemStatus;
    use pyo3::prelude::*;

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;
        super::error::add_to_module(m)
    }
}

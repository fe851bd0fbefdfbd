//! The interpreter's version as `cfg`s (`Py_3_11`, `Py_LIMITED_API`), so
//! that what the stable ABI has only from some version (the buffer
//! protocol: 3.11) is built when the wheel's interpreter has it.
fn main() {
    pyo3_build_config::use_pyo3_cfgs();
}

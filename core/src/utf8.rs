//! SKELETON: streaming UTF-8 validation.

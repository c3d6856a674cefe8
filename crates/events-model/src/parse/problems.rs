//! Collects every problem found while validating one event.

use crate::error::{ErrorCode, ValidationError, ValidationErrors};
use crate::limits::MAX_REPORTED_ERRORS;

/// Accumulates problems, keeping at most [`MAX_REPORTED_ERRORS`].
#[derive(Debug, Default)]
pub(crate) struct Problems {
    errors: Vec<ValidationError>,
}

impl Problems {
    /// Records one problem.
    pub(crate) fn add(&mut self, field: &str, code: ErrorCode, message: impl Into<String>) {
        if self.errors.len() < MAX_REPORTED_ERRORS {
            self.errors.push(ValidationError::new(field, code, message));
        }
    }

    /// Whether nothing went wrong so far.
    pub(crate) fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// Whether a problem was already recorded for `field`.
    pub(crate) fn mentions(&self, field: &str) -> bool {
        self.errors.iter().any(|e| e.field == field)
    }

    /// The collected problems.
    pub(crate) fn into_errors(self) -> ValidationErrors {
        ValidationErrors(self.errors)
    }
}

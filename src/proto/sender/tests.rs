//! sender tests

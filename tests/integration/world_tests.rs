//! placeholder: tests of the test world itself

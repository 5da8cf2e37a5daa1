//! placeholder: the test world fixture

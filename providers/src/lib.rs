//! Transports and resource providers.

//! jarvis-service

//! amocrm-client

//! fake-amocrm

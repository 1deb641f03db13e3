//! amocrm-webhook

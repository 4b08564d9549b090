//! Geolocation around the request-log job, with real Redis and both databases.

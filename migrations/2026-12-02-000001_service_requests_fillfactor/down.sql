ALTER TABLE service_requests RESET (fillfactor);

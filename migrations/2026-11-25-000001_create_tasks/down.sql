DROP TABLE service_requests;
DROP TABLE tasks;

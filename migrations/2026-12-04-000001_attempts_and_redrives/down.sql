DROP TABLE task_redrives;
DROP TABLE service_request_attempts;

DROP TRIGGER service_requests_log_updates ON service_requests;
DROP TRIGGER tasks_log_updates ON tasks;
DROP TRIGGER tasks_log_inserts ON tasks;
DROP FUNCTION task_events_log_service_requests();
DROP FUNCTION task_events_log_tasks();
DROP TABLE task_events;

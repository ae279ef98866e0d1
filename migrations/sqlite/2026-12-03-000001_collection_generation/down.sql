ALTER TABLE collections DROP COLUMN log_position;
ALTER TABLE collections DROP COLUMN generation;

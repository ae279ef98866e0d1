ALTER TABLE collections DROP COLUMN retrieval;

DROP TABLE chunks;
DROP TABLE documents;
DROP TABLE collections;

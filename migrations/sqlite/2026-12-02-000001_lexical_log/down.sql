DROP TABLE lexical_log;
DROP TABLE lexical_log_head;

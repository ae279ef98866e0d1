DROP TABLE document_signatures;

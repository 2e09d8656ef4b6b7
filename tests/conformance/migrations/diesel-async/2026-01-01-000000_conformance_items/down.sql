DROP TABLE conformance_items;

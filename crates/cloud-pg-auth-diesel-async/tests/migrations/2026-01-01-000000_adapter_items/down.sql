DROP TABLE diesel_adapter_items;

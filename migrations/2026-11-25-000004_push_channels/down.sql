DROP TABLE push_channels;

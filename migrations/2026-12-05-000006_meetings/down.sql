DROP TABLE meetings;
DROP TABLE availability_settings;

-- The tenant schema as it should be (mysql): the desired state `tenant-migrator diff --scope tenant`
-- compares the migrations with. Edit this file, run diff, review the migration it writes.

CREATE TABLE `appointments` (
    `id` char(36) NOT NULL,
    `client_id` char(36) NOT NULL,
    `professional_id` char(36) NOT NULL,
    `service_id` char(36) NOT NULL,
    `appointment_date` date NOT NULL,
    `start_time` time NOT NULL,
    `end_time` time NOT NULL,
    `status` varchar(20) NOT NULL DEFAULT 'SCHEDULED',
    `price_at_booking` decimal(10,2) NOT NULL,
    `notes_by_client` text NULL,
    `notes_by_professional` text NULL,
    `created_at` datetime(6) NOT NULL DEFAULT current_timestamp(6),
    `updated_at` datetime(6) NOT NULL DEFAULT current_timestamp(6) ON UPDATE current_timestamp(6),
    PRIMARY KEY (`id`),
    KEY `ix_appointments_client_date` (`client_id`, `appointment_date`),
    KEY `ix_appointments_date_status` (`appointment_date`, `status`),
    KEY `ix_appointments_professional_time` (`professional_id`, `appointment_date`, `start_time`),
    KEY `ix_appointments_service` (`service_id`),
    CONSTRAINT `ck_appointments_status` CHECK (`status` in ('SCHEDULED','CONFIRMED','CANCELLED','COMPLETED','NO_SHOW')),
    CONSTRAINT `ck_appointments_times` CHECK (`end_time` > `start_time`)
);

CREATE TABLE `professional_availabilities` (
    `id` char(36) NOT NULL,
    `professional_id` char(36) NOT NULL,
    `day_of_week` tinyint(4) NOT NULL,
    `start_time` time NOT NULL,
    `end_time` time NOT NULL,
    `created_at` datetime(6) NOT NULL DEFAULT current_timestamp(6),
    PRIMARY KEY (`id`),
    UNIQUE KEY `uq_professional_availabilities_slot` (`professional_id`, `day_of_week`, `start_time`),
    CONSTRAINT `ck_professional_availabilities_day` CHECK (`day_of_week` between 0 and 6),
    CONSTRAINT `ck_professional_availabilities_times` CHECK (`end_time` > `start_time`)
);

CREATE TABLE `professional_blocked_times` (
    `id` char(36) NOT NULL,
    `professional_id` char(36) NOT NULL,
    `blocked_date` date NOT NULL,
    `start_time` time NOT NULL,
    `end_time` time NOT NULL,
    `block_type` varchar(20) NOT NULL DEFAULT 'OTHER',
    `reason` varchar(255) NULL,
    `created_at` datetime(6) NOT NULL DEFAULT current_timestamp(6),
    PRIMARY KEY (`id`),
    KEY `ix_professional_blocked_times_date` (`professional_id`, `blocked_date`),
    CONSTRAINT `ck_professional_blocked_times_times` CHECK (`end_time` > `start_time`),
    CONSTRAINT `ck_professional_blocked_times_type` CHECK (`block_type` in ('VACATION','SICK_LEAVE','PERSONAL','OTHER'))
);

CREATE TABLE `professional_breaks` (
    `id` char(36) NOT NULL,
    `professional_id` char(36) NOT NULL,
    `day_of_week` tinyint(4) NOT NULL,
    `start_time` time NOT NULL,
    `end_time` time NOT NULL,
    `name` varchar(100) NULL,
    `created_at` datetime(6) NOT NULL DEFAULT current_timestamp(6),
    PRIMARY KEY (`id`),
    KEY `ix_professional_breaks_day` (`professional_id`, `day_of_week`),
    CONSTRAINT `ck_professional_breaks_day` CHECK (`day_of_week` between 0 and 6),
    CONSTRAINT `ck_professional_breaks_times` CHECK (`end_time` > `start_time`)
);

CREATE TABLE `service_categories` (
    `id` char(36) NOT NULL,
    `name` varchar(100) NOT NULL,
    `description` varchar(500) NULL,
    `display_order` int(11) NOT NULL DEFAULT 0,
    `created_at` datetime(6) NOT NULL DEFAULT current_timestamp(6),
    PRIMARY KEY (`id`),
    UNIQUE KEY `uq_service_categories_name` (`name`)
);

CREATE TABLE `services` (
    `id` char(36) NOT NULL,
    `category_id` char(36) NOT NULL,
    `name` varchar(150) NOT NULL,
    `description` text NULL,
    `duration_minutes` int(11) NOT NULL,
    `price` decimal(10,2) NOT NULL,
    `commission_percentage` decimal(5,2) NULL,
    `is_active` tinyint(1) NOT NULL DEFAULT 1,
    `created_at` datetime(6) NOT NULL DEFAULT current_timestamp(6),
    `updated_at` datetime(6) NOT NULL DEFAULT current_timestamp(6) ON UPDATE current_timestamp(6),
    PRIMARY KEY (`id`),
    KEY `ix_services_category` (`category_id`, `is_active`),
    CONSTRAINT `ck_services_duration` CHECK (`duration_minutes` > 0),
    CONSTRAINT `ck_services_price` CHECK (`price` >= 0)
);

CREATE TABLE `users_tenant` (
    `id` char(36) NOT NULL,
    `email` varchar(255) NOT NULL,
    `hashed_password` varchar(255) NOT NULL,
    `full_name` varchar(255) NULL,
    `phone_number` varchar(32) NULL,
    `role` varchar(20) NOT NULL DEFAULT 'CLIENTE',
    `is_active` tinyint(1) NOT NULL DEFAULT 1,
    `created_at` datetime(6) NOT NULL DEFAULT current_timestamp(6),
    `updated_at` datetime(6) NOT NULL DEFAULT current_timestamp(6) ON UPDATE current_timestamp(6),
    PRIMARY KEY (`id`),
    KEY `ix_users_tenant_role` (`role`, `is_active`),
    UNIQUE KEY `uq_users_tenant_email` (`email`),
    CONSTRAINT `ck_users_tenant_role` CHECK (`role` in ('CLIENTE','PROFISSIONAL','ATENDENTE','GESTOR'))
);

ALTER TABLE `appointments` ADD CONSTRAINT `fk_appointments_client` FOREIGN KEY (`client_id`) REFERENCES `users_tenant` (`id`) ON UPDATE RESTRICT ON DELETE RESTRICT;

ALTER TABLE `appointments` ADD CONSTRAINT `fk_appointments_professional` FOREIGN KEY (`professional_id`) REFERENCES `users_tenant` (`id`) ON UPDATE RESTRICT ON DELETE RESTRICT;

ALTER TABLE `appointments` ADD CONSTRAINT `fk_appointments_service` FOREIGN KEY (`service_id`) REFERENCES `services` (`id`) ON UPDATE RESTRICT ON DELETE RESTRICT;

ALTER TABLE `professional_availabilities` ADD CONSTRAINT `fk_professional_availabilities_professional` FOREIGN KEY (`professional_id`) REFERENCES `users_tenant` (`id`) ON UPDATE RESTRICT ON DELETE CASCADE;

ALTER TABLE `professional_blocked_times` ADD CONSTRAINT `fk_professional_blocked_times_professional` FOREIGN KEY (`professional_id`) REFERENCES `users_tenant` (`id`) ON UPDATE RESTRICT ON DELETE CASCADE;

ALTER TABLE `professional_breaks` ADD CONSTRAINT `fk_professional_breaks_professional` FOREIGN KEY (`professional_id`) REFERENCES `users_tenant` (`id`) ON UPDATE RESTRICT ON DELETE CASCADE;

ALTER TABLE `services` ADD CONSTRAINT `fk_services_category` FOREIGN KEY (`category_id`) REFERENCES `service_categories` (`id`) ON UPDATE RESTRICT ON DELETE RESTRICT;


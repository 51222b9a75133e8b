-- Token version of each admin: disabling an account or changing its role raises it, which
-- retires every access token issued before (tokens carry the version they were issued at).

ALTER TABLE admin_master_users ADD COLUMN token_version BIGINT NOT NULL DEFAULT 0;

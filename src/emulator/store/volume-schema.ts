/**
 * The tables of EC2 volumes, instances and fast snapshot restore, the fourth
 * step of the catalog's schema. One JSON record per row; rows keep their
 * rowid when updated, so a load lists them in the order they were made.
 */
export const VOLUME_SCHEMA = `
CREATE TABLE ec2_volumes (
  volume_id TEXT PRIMARY KEY,
  record TEXT NOT NULL
);
-- CreateVolume client tokens, by Region and token.
CREATE TABLE ec2_volume_tokens (
  token_key TEXT PRIMARY KEY,
  parameters TEXT NOT NULL,
  volume_id TEXT NOT NULL
);
CREATE TABLE ec2_instances (
  instance_id TEXT PRIMARY KEY,
  record TEXT NOT NULL
);
-- By snapshot id and zone.
CREATE TABLE ec2_fast_restores (
  snapshot_zone TEXT PRIMARY KEY,
  record TEXT NOT NULL
);
`;

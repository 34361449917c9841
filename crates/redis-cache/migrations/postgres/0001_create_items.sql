-- Items: the source of truth the cache reads through.
CREATE TABLE items (
    id          TEXT             NOT NULL PRIMARY KEY,
    name        TEXT             NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    description TEXT             NOT NULL DEFAULT '' CHECK (char_length(description) <= 2000),
    price       DOUBLE PRECISION NOT NULL CHECK (price >= 0),
    category    TEXT             NOT NULL DEFAULT '' CHECK (char_length(category) <= 100),
    stock       BIGINT           NOT NULL CHECK (stock >= 0),
    created_at  TIMESTAMPTZ      NOT NULL,
    updated_at  TIMESTAMPTZ      NOT NULL,
    version     BIGINT           NOT NULL DEFAULT 1 CHECK (version >= 1)
);

-- One row per fact about the database itself, e.g. when it was first initialised.
CREATE TABLE store_meta (
    name  TEXT NOT NULL PRIMARY KEY,
    value TEXT NOT NULL
);

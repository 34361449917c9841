-- Items: the source of truth the cache reads through.
CREATE TABLE items (
    id          TEXT    NOT NULL PRIMARY KEY,
    name        TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    description TEXT    NOT NULL DEFAULT '' CHECK (length(description) <= 2000),
    price       REAL    NOT NULL CHECK (price >= 0),
    category    TEXT    NOT NULL DEFAULT '' CHECK (length(category) <= 100),
    stock       INTEGER NOT NULL CHECK (stock >= 0),
    created_at  TEXT    NOT NULL,
    updated_at  TEXT    NOT NULL,
    version     INTEGER NOT NULL DEFAULT 1 CHECK (version >= 1)
) STRICT;

-- One row per fact about the database itself, e.g. when it was first initialised.
CREATE TABLE store_meta (
    name  TEXT NOT NULL PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;

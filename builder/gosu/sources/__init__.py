"""Where gosu comes from: one module per source, each verifying what it hands on."""

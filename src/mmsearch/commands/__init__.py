"""The CLI's commands, one module per group; `common` holds what they share and `mmsearch.cli` assembles them."""

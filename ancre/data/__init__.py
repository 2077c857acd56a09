"""The data pipeline: shards -> documents -> sentencepiece ids -> packed windows -> batches."""

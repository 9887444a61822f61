{#- Daily bars of shard 1 of 2 of the symbols (macros/staging_model.sql). -#}
{{ datapipe_daily_prices_staging_model(shard=1, shards=2) }}

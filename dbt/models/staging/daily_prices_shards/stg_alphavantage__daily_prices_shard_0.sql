{#- Daily bars of shard 0 of 2 of the symbols (macros/staging_model.sql). -#}
{{ datapipe_daily_prices_staging_model(shard=0, shards=2) }}

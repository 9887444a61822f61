{#- Indicators of shard 1 of 2 of the symbols (macros/indicators_model.sql). -#}
{{ datapipe_indicators_model(shard=1, shards=2) }}

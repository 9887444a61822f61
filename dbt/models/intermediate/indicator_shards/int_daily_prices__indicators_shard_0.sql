{#- Indicators of shard 0 of 2 of the symbols (macros/indicators_model.sql). -#}
{{ datapipe_indicators_model(shard=0, shards=2) }}

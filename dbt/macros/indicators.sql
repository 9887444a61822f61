{#-
  The recursive indicators (EMA 12/26, MACD signal, Wilder RSI 14) as ONE aggregate used as a
  window function, `over (partition by symbol order by trade_date rows between unbounded
  preceding and current row)`: one PL/pgSQL call per bar, O(n), exact recursion.

  Its state (and result) is a composite type with one named slot per quantity the recursion
  carries from one bar to the next; a slot is null until its indicator is defined (ema_12 from
  bar 12, ema_26 from bar 26, macd_signal from bar 34, the RSI averages from bar 15). The int
  models store it per bar (`indicator_state`): an incremental run restarts the recursion from the
  stored state of the bar before the first changed one (the aggregate's second argument; null =
  start from the first bar).

  The type's name carries a version: `staging.datapipe_indicator_state_` + the first 8 hex digits
  of the md5 of the slots and the step function (whitespace-normalised; Jinja comments like this
  one do not count). A state stored by any other recursion therefore has another type, and the int
  models refuse to continue from it (`datapipe_require_current_indicator_state`) and name the
  upgrade command instead. docs/transform.md: "Adding an indicator", "Upgrading stored state".

  Definitions (TA-Lib defaults, except where docs/transform.md says otherwise): EMA alpha =
  2/(n+1) seeded with the SMA of the first n closes; MACD signal = EMA 9 of macd seeded with the
  mean of the first 9 macd values; RSI = Wilder, first average = mean of the first 14 changes,
  then (prev*13 + current)/14.
-#}

{#- The slots of the state, in storage order (integers first: no alignment padding). -#}
{% macro datapipe_indicator_state_slots() -%}
    bars_seen integer,
    macd_seen integer,
    previous_close double precision,
    close_sum_12 double precision,
    ema_12 double precision,
    close_sum_26 double precision,
    ema_26 double precision,
    macd_sum_9 double precision,
    macd_signal double precision,
    gain_sum_14 double precision,
    loss_sum_14 double precision,
    avg_gain_14 double precision,
    avg_loss_14 double precision
{%- endmacro %}

{#- The state before the first bar: counters and sums 0, every indicator undefined. -#}
{% macro datapipe_indicator_state_initial() -%}
row(0, 0, null, 0, null, 0, null, 0, null, 0, 0, null, null)
{%- endmacro %}

{#- The body of the step function: the state after one more close (`state_type` is the type name). -#}
{% macro datapipe_indicator_step_body(state_type) -%}
declare
  s {{ state_type }} := coalesce(state, seed, {{ datapipe_indicator_state_initial() }}::{{ state_type }});
  macd double precision;
  change double precision;
begin
  if close_price is null then
    return s;
  end if;
  s.bars_seen := s.bars_seen + 1;
  {#- EMA 12: alpha = 2/13, seeded with the mean of the first 12 closes #}
  if s.bars_seen <= 12 then
    s.close_sum_12 := s.close_sum_12 + close_price;
    if s.bars_seen = 12 then s.ema_12 := s.close_sum_12 / 12; end if;
  else
    s.ema_12 := 0.15384615384615385 * close_price + 0.8461538461538461 * s.ema_12;
  end if;
  {#- EMA 26: alpha = 2/27 #}
  if s.bars_seen <= 26 then
    s.close_sum_26 := s.close_sum_26 + close_price;
    if s.bars_seen = 26 then s.ema_26 := s.close_sum_26 / 26; end if;
  else
    s.ema_26 := 0.07407407407407407 * close_price + 0.9259259259259259 * s.ema_26;
  end if;
  {#- MACD signal: EMA 9 (alpha = 0.2) of macd, seeded with the mean of the first 9 values #}
  if s.bars_seen >= 26 then
    macd := s.ema_12 - s.ema_26;
    s.macd_seen := s.macd_seen + 1;
    if s.macd_seen <= 9 then
      s.macd_sum_9 := s.macd_sum_9 + macd;
      if s.macd_seen = 9 then s.macd_signal := s.macd_sum_9 / 9; end if;
    else
      s.macd_signal := 0.2 * macd + 0.8 * s.macd_signal;
    end if;
  end if;
  {#- Wilder RSI 14: the first averages are means of the first 14 changes #}
  if s.bars_seen >= 2 then
    change := close_price - s.previous_close;
    if s.bars_seen <= 15 then
      s.gain_sum_14 := s.gain_sum_14 + greatest(change, 0);
      s.loss_sum_14 := s.loss_sum_14 + greatest(-change, 0);
      if s.bars_seen = 15 then
        s.avg_gain_14 := s.gain_sum_14 / 14;
        s.avg_loss_14 := s.loss_sum_14 / 14;
      end if;
    else
      s.avg_gain_14 := (s.avg_gain_14 * 13 + greatest(change, 0)) / 14;
      s.avg_loss_14 := (s.avg_loss_14 * 13 + greatest(-change, 0)) / 14;
    end if;
  end if;
  s.previous_close := close_price;
  return s;
end
{%- endmacro %}

{#- The versioned name of the state type (see the top of this file). -#}
{% macro datapipe_indicator_state_type() -%}
{%- set definition = datapipe_indicator_state_slots() ~ datapipe_indicator_state_initial()
    ~ datapipe_indicator_step_body('STATE') -%}
staging.datapipe_indicator_state_{{ local_md5(definition.split() | join(' '))[:8] }}
{%- endmacro %}

{#-
  PL/pgSQL statements (inside the support objects' DO block) that create the state type, the step
  function and the aggregate for this version, then drop what older versions left: their function
  and aggregate overloads, and their state types once no table stores them any more.
-#}
{% macro datapipe_indicator_objects_ddl() %}
{%- set state_type = datapipe_indicator_state_type() %}
  if to_regtype('{{ state_type }}') is null then
    create type {{ state_type }} as (
    {{ datapipe_indicator_state_slots() }}
    );
  end if;
  create or replace function staging.datapipe_indicator_step(
      state {{ state_type }}, close_price double precision, seed {{ state_type }}
  ) returns {{ state_type }} language plpgsql immutable parallel safe as $fn$
{{ datapipe_indicator_step_body(state_type) }}
$fn$;
  create or replace aggregate staging.datapipe_indicators(double precision, {{ state_type }}) (
    sfunc = staging.datapipe_indicator_step,
    stype = {{ state_type }}
  );
  for stale in
    select p.oid::regprocedure::text as signature, p.prokind = 'a' as is_aggregate
    from pg_proc as p
    where p.pronamespace = 'staging'::regnamespace
      and p.proname in ('datapipe_indicators', 'datapipe_indicator_step')
      and not '{{ state_type }}'::regtype::oid = any(p.proargtypes::oid[])
    order by is_aggregate desc
  loop
    execute case when stale.is_aggregate then 'drop aggregate ' else 'drop function ' end || stale.signature;
  end loop;
  for stale in
    select t.oid::regtype::text as signature
    from pg_type as t
    where t.typnamespace = 'staging'::regnamespace
      and t.typtype = 'c'
      and t.typname like 'datapipe\_indicator\_state\_%'
      and t.oid <> '{{ state_type }}'::regtype::oid
  loop
    begin
      execute 'drop type ' || stale.signature;
    exception when dependent_objects_still_exist then
      null;  -- a table built by that version still stores it: kept until it is rebuilt
    end;
  end loop;
{% endmacro %}

{#-
  Called by the int models before an incremental run: the stored state must be of this version's
  type, else the run stops here (nothing is written) with the upgrade command.
-#}
{% macro datapipe_require_current_indicator_state(relation) %}
{%- if execute %}
  {%- set state_type = datapipe_indicator_state_type() %}
  {%- set found = run_query(
      "select format_type(a.atttypid, a.atttypmod), a.atttypid = to_regtype('" ~ state_type ~ "')"
      ~ " from pg_attribute as a"
      ~ " where a.attrelid = to_regclass(quote_ident('" ~ relation.schema ~ "') || '.' || quote_ident('"
      ~ relation.identifier ~ "'))"
      ~ " and a.attname = 'indicator_state' and not a.attisdropped"
  ).rows %}
  {%- if not found or not found[0][1] %}
    {{ exceptions.raise_compiler_error(
        relation.schema ~ "." ~ relation.identifier ~ " stores the state of another version of the"
        ~ " indicator recursion (column indicator_state is "
        ~ (found[0][0] if found else "missing") ~ "; this version stores " ~ state_type ~ ")."
        ~ " Continuing from it would compute wrong EMA, MACD and RSI values: this model and everything"
        ~ " downstream of it are left as they are."
        ~ " Rebuild the indicator models and everything downstream of them once:"
        ~ " `make refresh-indicators` locally, or"
        ~ " `dbt build --full-refresh --select tag:indicator_state+` in the datapipe-transform image;"
        ~ " then run the pipeline as usual (docs/transform.md, \"Upgrading stored state\")."
    ) }}
  {%- endif %}
{%- endif %}
{% endmacro %}

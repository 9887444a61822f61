{#-
  The recursive indicators (EMA 12/26, MACD signal, Wilder RSI 14) as ONE aggregate used as a
  window function, `over (partition by symbol order by trade_date rows between unbounded
  preceding and current row)`: one PL/pgSQL call per bar, O(n), exact recursion.

  The aggregate's state (and result) is a double precision[13] describing everything the
  recursion needs after a bar:
    [1] bars seen            [2] previous close
    [3] sum of first 12 closes  [4] ema_12
    [5] sum of first 26 closes  [6] ema_26
    [7] macd values seen     [8] sum of first 9 macd  [9] macd_signal
    [10] sum of first 14 gains  [11] sum of first 14 losses  [12] avg gain  [13] avg loss
  The second argument seeds the recursion: the stored state of the bar just before the first row
  fed to the aggregate (incremental runs), or null to start from the first bar.
  Definitions (TA-Lib defaults): EMA alpha = 2/(n+1) seeded with the SMA of the first n closes;
  MACD signal = EMA 9 of macd seeded with the mean of the first 9 macd values; RSI = Wilder,
  first average = mean of the first 14 changes, then (prev*13 + current)/14.
-#}
{% macro datapipe_indicator_function_ddl() %}
create or replace function staging.datapipe_indicator_step(
    state double precision[], close_price double precision, seed double precision[]
) returns double precision[] language plpgsql immutable parallel safe as $$
declare
  s   double precision[] := coalesce(state, seed, '{0,0,0,0,0,0,0,0,0,0,0,0,0}');
  bar double precision := s[1] + 1;
  s12 double precision := s[3];  e12 double precision := s[4];
  s26 double precision := s[5];  e26 double precision := s[6];
  mn  double precision := s[7];  ms  double precision := s[8];  sig double precision := s[9];
  gs  double precision := s[10]; ls  double precision := s[11];
  ag  double precision := s[12]; al  double precision := s[13];
  m   double precision;
  chg double precision;
begin
  if close_price is null then
    return s;
  end if;
  -- EMA 12: alpha = 2/13
  if bar <= 12 then
    s12 := s12 + close_price;
    if bar = 12 then e12 := s12 / 12; end if;
  else
    e12 := 0.15384615384615385 * close_price + 0.8461538461538461 * e12;
  end if;
  -- EMA 26: alpha = 2/27
  if bar <= 26 then
    s26 := s26 + close_price;
    if bar = 26 then e26 := s26 / 26; end if;
  else
    e26 := 0.07407407407407407 * close_price + 0.9259259259259259 * e26;
  end if;
  -- MACD signal: EMA 9 (alpha = 0.2) of macd, seeded with the mean of the first 9 values
  if bar >= 26 then
    m := e12 - e26;
    mn := mn + 1;
    if mn <= 9 then
      ms := ms + m;
      if mn = 9 then sig := ms / 9; end if;
    else
      sig := 0.2 * m + 0.8 * sig;
    end if;
  end if;
  -- Wilder RSI 14
  if bar >= 2 then
    chg := close_price - s[2];
    if bar <= 15 then
      gs := gs + greatest(chg, 0);
      ls := ls + greatest(-chg, 0);
      if bar = 15 then ag := gs / 14; al := ls / 14; end if;
    else
      ag := (ag * 13 + greatest(chg, 0)) / 14;
      al := (al * 13 + greatest(-chg, 0)) / 14;
    end if;
  end if;
  return array[bar, close_price, s12, e12, s26, e26, mn, ms, sig, gs, ls, ag, al];
end
$$;
create or replace aggregate staging.datapipe_indicators(double precision, double precision[]) (
  sfunc = staging.datapipe_indicator_step,
  stype = double precision[]
);
{% endmacro %}

#!/usr/bin/env python3
"""Generates the island microgrid's device profiles: island_profiles.csv.

One day in 96 quarter-hour periods (the paper's field period T_Δ = 15 min). Every column is the
average power in watts (W) over the period; energy per period in Wh is W / 4.

- wind_turbine_w: one Enercon E-82/2350 turbine (windpowerlib power curve, hub height 78 m).
  Wind speed at hub height: a diurnal sea-breeze shape (stronger in the afternoon) around
  8 m/s with deterministic turbulence (seeded), as an island coastal site would see.
- pv_household_w: a 6 kWp rooftop PV system on a south-facing 25° roof (pvlib clear-sky
  Ineichen irradiance, Faiman cell temperature, PVWatts DC model with -0.4 %/K, 14 % losses)
  at 29.98 N, 122.20 E (Zhoushan islands) on 2025-06-21.
- household_load_w: one household, BDEW H0 standard load profile (demandlib), 3,500 kWh/year,
  on the same summer working day.
- charging_pile_w: one 7 kW AC charging pile, evening-heavy sessions (a documented shape:
  arrivals 17:00-22:00 plus a lunchtime top-up).
- water_plant_w: the island's water purification plant, 40 kW base with pumps at 80 kW in the
  early morning and late evening tariff windows.

- battery_w: the island's 500 kW / 2 MWh battery store, signed: charging (negative) at
  400 kW 10:00-14:00 when PV peaks, discharging (positive) at 400 kW 18:00-22:00.

Run once; the CSV output is committed, so the node needs no Python. Needs
`pip install pvlib windpowerlib demandlib==0.2.2 "pandas<3"` (demandlib 0.2.2 turns warnings
into errors, and pandas 3 warns about an argument it uses). Generated with pvlib 0.16.1,
windpowerlib 0.2.2, demandlib 0.2.2, pandas 2.x.
"""

import csv
import math
import random
from pathlib import Path

import pandas as pd
import pvlib
from demandlib import bdew
from windpowerlib import WindTurbine

DAY = "2025-06-21"
OUT = Path(__file__).with_name("island_profiles.csv")
TZ = "Asia/Shanghai"


def periods():
    return pd.date_range(f"{DAY} 00:00", periods=96, freq="15min", tz=TZ)


def wind_profile(index):
    turbine = WindTurbine(turbine_type="E-82/2350", hub_height=78)
    curve = turbine.power_curve  # columns: wind_speed (m/s), value (W)
    rng = random.Random(20250621)
    out = []
    for ts in index:
        hour = ts.hour + ts.minute / 60
        diurnal = 8.0 + 2.5 * math.sin((hour - 9) / 24 * 2 * math.pi)
        speed = max(0.0, diurnal + rng.gauss(0, 1.2))
        power = float(pd.Series(curve["value"].values, index=curve["wind_speed"].values)
                      .reindex(sorted(set(curve["wind_speed"].values) | {speed}))
                      .interpolate(method="index").loc[speed])
        out.append(max(0.0, power))
    return out


def pv_profile(index):
    site = pvlib.location.Location(29.98, 122.20, tz=TZ, altitude=10)
    times = index + pd.Timedelta(minutes=7.5)  # mid-period
    clearsky = site.get_clearsky(times, model="ineichen")
    solpos = site.get_solarposition(times)
    poa = pvlib.irradiance.get_total_irradiance(
        surface_tilt=25, surface_azimuth=180,
        solar_zenith=solpos["apparent_zenith"], solar_azimuth=solpos["azimuth"],
        dni=clearsky["dni"], ghi=clearsky["ghi"], dhi=clearsky["dhi"])
    temp_cell = pvlib.temperature.faiman(poa["poa_global"], temp_air=28, wind_speed=3)
    dc = pvlib.pvsystem.pvwatts_dc(poa["poa_global"], temp_cell, pdc0=6000, gamma_pdc=-0.004)
    ac = dc * (1 - 0.14)
    return [max(0.0, float(x)) for x in ac.fillna(0).values]


def household_profile(index):
    year = index[0].year
    slp = bdew.ElecSlp(year).get_scaled_profiles({"h0": 3500})  # kWh per quarter hour
    day = slp.loc[f"{DAY}"]["h0"].values[:96]
    return [float(kwh) * 4 * 1000 for kwh in day]  # kWh/15 min -> W


def charging_pile_profile(index):
    out = []
    for ts in index:
        h = ts.hour + ts.minute / 60
        share = 0.0
        if 17 <= h < 22:
            share = 0.35 + 0.45 * math.sin((h - 17) / 5 * math.pi)
        elif 12 <= h < 13.5:
            share = 0.3
        elif h >= 22 or h < 1:
            share = 0.15
        out.append(7000 * share)
    return out


def water_plant_profile(index):
    out = []
    for ts in index:
        h = ts.hour + ts.minute / 60
        pumps = 40_000 if (4 <= h < 7) or (20 <= h < 23) else 0
        out.append(40_000 + pumps)
    return out


def battery_profile(index):
    out = []
    for ts in index:
        h = ts.hour + ts.minute / 60
        out.append(-400_000 if 10 <= h < 14 else 400_000 if 18 <= h < 22 else 0)
    return out


def main():
    index = periods()
    columns = {
        "wind_turbine_w": wind_profile(index),
        "pv_household_w": pv_profile(index),
        "household_load_w": household_profile(index),
        "charging_pile_w": charging_pile_profile(index),
        "water_plant_w": water_plant_profile(index),
        "battery_w": battery_profile(index),
    }
    with OUT.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["period", "time"] + list(columns))
        for i, ts in enumerate(index):
            w.writerow([i, ts.strftime("%H:%M")] + [round(columns[c][i]) for c in columns])
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()

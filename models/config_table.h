#pragma once
// A config described once, as a table of fields. Each field has its JSON key,
// its command-line flag (or none), its help text and what values it allows;
// from the table come the JSON writer and reader (checkpoint metadata), the
// flags and their --help text (examples/config_flags.h), with one message
// for a bad value wherever it comes from:
//
//   'n_layer' must be an integer in [1, 1024], got 1e+300      (JSON)
//   --layers must be an integer in [1, 1024], got 0            (flag)
//
//   const config::Table<GPTConfig> t = {
//       config::integer<GPTConfig>("n_layer", "--layers", &GPTConfig::n_layer, 1, 1024, "transformer blocks"),
//       config::choice<GPTConfig>("dtype", "", &GPTConfig::dtype, kDTypeNames, "parameter dtype"), ...};
//   nlohmann::json j = config::to_json(t, cfg);
//   config::read_json(t, j, cfg, "GPT config");   // unknown keys and bad values are dg::Errors naming the key
//
// Integers are integers: a JSON float (1.9, 1e300) is refused where an integer
// is meant, never converted. Every key is required unless its field says
// otherwise (Field::required), and no other key is accepted.
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "tensor/error.h"

namespace dg::config {

// The names of one enum's values, used for JSON, flags and help alike.
template <class E>
struct EnumNames {
  std::vector<std::pair<E, std::string>> names;

  const std::string& of(E e) const {
    for (auto& [v, n] : names)
      if (v == e) return n;
    throw Error("config: an enum value has no name");
  }
  bool parse(const std::string& s, E& out) const {
    for (auto& [v, n] : names)
      if (s == n) {
        out = v;
        return true;
      }
    return false;
  }
  std::string list() const {  // "ponder | bias"
    std::string s;
    for (auto& [v, n] : names) s += (s.empty() ? "" : " | ") + n;
    return s;
  }
};

// A closed, open or half-open interval of reals; hi = inf for none.
struct Interval {
  double lo = -std::numeric_limits<double>::infinity(), hi = std::numeric_limits<double>::infinity();
  bool lo_open = false, hi_open = false;

  bool contains(double x) const {
    return std::isfinite(x) && (lo_open ? x > lo : x >= lo) && (hi_open ? x < hi : x <= hi);
  }
  std::string text() const {
    if (std::isinf(lo) && std::isinf(hi)) return "a finite number";
    if (std::isinf(hi)) return fmt::format("a number {} {}", lo_open ? ">" : ">=", lo);
    return fmt::format("a number in {}{}, {}{}", lo_open ? "(" : "[", lo, hi, hi_open ? ")" : "]");
  }
};
inline constexpr double kInf = std::numeric_limits<double>::infinity();

// A JSON value as a message shows it: bounded, containers not spelled out.
inline std::string shown(const nlohmann::json& v) {
  if (v.is_object()) return "an object";
  if (v.is_array()) return "an array";
  return excerpt(v.dump(), 64);
}

template <class C>
struct Field {
  std::string key;      // the JSON key
  std::string flag;     // "--layers"; empty: JSON only
  std::string help;     // what it is
  std::string allowed;  // "an integer in [1, 1024]"
  bool text_is_value = false;  // a flag's text is the value (enum names, paths), not a JSON literal
  bool is_switch = false;      // a bool: its flag takes no value
  std::function<nlohmann::json(const C&)> get;
  // Sets the field from v, or throws "<name> must be <allowed>, got <v>".
  std::function<void(C&, const nlohmann::json&, const std::string& name)> set;
  // A key the JSON lacks is an error; a field added after checkpoints were
  // written is made optional (it keeps its default there) so they still read.
  bool required = true;
};
template <class C>
using Table = std::vector<Field<C>>;

[[noreturn]] inline void refuse(const std::string& name, const std::string& allowed, const nlohmann::json& v) {
  throw Error(fmt::format("{} must be {}, got {}", name, allowed, shown(v)));
}

// ---------------------------------------------------------------- field kinds
template <class C>
Field<C> integer(std::string key, std::string flag, int64_t C::*m, int64_t lo, int64_t hi, std::string help) {
  std::string allowed = hi == std::numeric_limits<int64_t>::max() ? fmt::format("an integer >= {}", lo)
                                                                  : fmt::format("an integer in [{}, {}]", lo, hi);
  auto set = [m, lo, hi, allowed](C& c, const nlohmann::json& v, const std::string& name) {
    if (v.is_number_unsigned()) {
      const uint64_t u = v.get<uint64_t>();
      if (u > static_cast<uint64_t>(hi) || static_cast<int64_t>(u) < lo) refuse(name, allowed, v);
      c.*m = static_cast<int64_t>(u);
    } else if (v.is_number_integer()) {
      const int64_t i = v.get<int64_t>();
      if (i < lo || i > hi) refuse(name, allowed, v);
      c.*m = i;
    } else {
      refuse(name, allowed, v);
    }
  };
  return {std::move(key), std::move(flag), std::move(help), allowed, false, false,
          [m](const C& c) { return nlohmann::json(c.*m); }, set};
}

// A seed: any integer in [0, 2^64 - 1].
template <class C>
Field<C> seed(std::string key, std::string flag, uint64_t C::*m, std::string help) {
  std::string allowed = "an integer in [0, 2^64 - 1]";
  auto set = [m, allowed](C& c, const nlohmann::json& v, const std::string& name) {
    if (v.is_number_unsigned()) return void(c.*m = v.get<uint64_t>());
    if (v.is_number_integer() && v.get<int64_t>() >= 0) return void(c.*m = static_cast<uint64_t>(v.get<int64_t>()));
    refuse(name, allowed, v);
  };
  return {std::move(key), std::move(flag), std::move(help), allowed, false, false,
          [m](const C& c) { return nlohmann::json(c.*m); }, set};
}

template <class C>
Field<C> real(std::string key, std::string flag, double C::*m, Interval in, std::string help) {
  std::string allowed = in.text();
  auto set = [m, in, allowed](C& c, const nlohmann::json& v, const std::string& name) {
    if (!v.is_number() || !in.contains(v.get<double>())) refuse(name, allowed, v);
    c.*m = v.get<double>();
  };
  return {std::move(key), std::move(flag), std::move(help), allowed, false, false,
          [m](const C& c) { return nlohmann::json(c.*m); }, set};
}

template <class C>
Field<C> boolean(std::string key, std::string flag, bool C::*m, std::string help) {
  auto set = [m](C& c, const nlohmann::json& v, const std::string& name) {
    if (!v.is_boolean()) refuse(name, "true or false", v);
    c.*m = v.get<bool>();
  };
  return {std::move(key), std::move(flag), std::move(help), "true or false", false, true,
          [m](const C& c) { return nlohmann::json(c.*m); }, set};
}

template <class C>
Field<C> text(std::string key, std::string flag, std::string C::*m, std::string help) {
  auto set = [m](C& c, const nlohmann::json& v, const std::string& name) {
    if (!v.is_string()) refuse(name, "a string", v);
    c.*m = v.get<std::string>();
  };
  return {std::move(key), std::move(flag), std::move(help), "a string", true, false,
          [m](const C& c) { return nlohmann::json(c.*m); }, set};
}

template <class C, class E>
Field<C> choice(std::string key, std::string flag, E C::*m, EnumNames<E> names, std::string help) {
  std::string allowed = "one of " + names.list();
  auto set = [m, names, allowed](C& c, const nlohmann::json& v, const std::string& name) {
    if (!v.is_string() || !names.parse(v.get<std::string>(), c.*m)) refuse(name, allowed, v);
  };
  return {std::move(key), std::move(flag), std::move(help), allowed, true, false,
          [m, names](const C& c) { return nlohmann::json(names.of(c.*m)); }, set};
}

// The fields of a member config (MoDConfig::gpt), as fields of the outer one.
template <class C, class S>
Table<C> nested(const Table<S>& inner, S C::*m) {
  Table<C> out;
  for (const Field<S>& f : inner)
    out.push_back({f.key, f.flag, f.help, f.allowed, f.text_is_value, f.is_switch,
                   [m, get = f.get](const C& c) { return get(c.*m); },
                   [m, set = f.set](C& c, const nlohmann::json& v, const std::string& name) { set(c.*m, v, name); },
                   f.required});
  return out;
}

template <class C>
Table<C> operator+(Table<C> a, const Table<C>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// ---------------------------------------------------------------- JSON
template <class C>
nlohmann::json to_json(const Table<C>& t, const C& c) {
  nlohmann::json j = nlohmann::json::object();
  for (const Field<C>& f : t) j[f.key] = f.get(c);
  return j;
}

// Reads j into c; `where` prefixes every message ("MoB config",
// "checkpoint runs/a/ckpt.safetensors: model_config").
template <class C>
void read_json(const Table<C>& t, const nlohmann::json& j, C& c, const std::string& where) {
  DG_CHECK(j.is_object(), "{}: expected a JSON object, got {}", where, shown(j));
  for (const Field<C>& f : t) DG_CHECK(!f.required || j.contains(f.key), "{}: missing key '{}'", where, f.key);
  for (auto& [key, v] : j.items()) {
    const Field<C>* f = nullptr;
    for (const Field<C>& g : t)
      if (g.key == key) f = &g;
    if (!f) {
      std::string known;
      for (const Field<C>& g : t) known += (known.empty() ? "" : ", ") + g.key;
      throw Error(fmt::format("{}: unknown key '{}' (known: {})", where, excerpt(key, 64), known));
    }
    try {
      f->set(c, v, "'" + key + "'");
    } catch (const Error& e) {
      throw Error(fmt::format("{}: {}", where, e.what()));
    }
  }
}

// Parses JSON text and reads it over `defaults` (the optional fields' values).
template <class C>
C from_json_text(const Table<C>& t, const std::string& text, const std::string& where, C defaults = {}) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  DG_CHECK(!j.is_discarded(), "{}: not valid JSON: {}", where, excerpt(text, 64));
  read_json(t, j, defaults, where);
  return defaults;
}

// Checks every field of a config made in code against the table's ranges.
template <class C>
void check_ranges(const Table<C>& t, const C& c, const std::string& where) {
  C copy = c;
  read_json(t, to_json(t, c), copy, where);
}

// A flag's text as the field's value: a JSON literal (42, 0.5, true), or the
// text itself for enum and string fields.
template <class C>
void set_from_text(const Field<C>& f, C& c, const std::string& text) {
  nlohmann::json v = f.text_is_value ? nlohmann::json(text) : nlohmann::json::parse(text, nullptr, false);
  if (v.is_discarded()) v = text;  // refused by set, quoted
  f.set(c, v, f.flag.empty() ? "'" + f.key + "'" : f.flag);
}

template <class C>
const Field<C>& field(const Table<C>& t, const std::string& key) {
  for (const Field<C>& f : t)
    if (f.key == key) return f;
  throw Error(fmt::format("config: no field '{}'", key));
}

// "--layers" or 'n_layer' for messages about field `key`.
template <class C>
std::string label(const Table<C>& t, const std::string& key) {
  const Field<C>& f = field(t, key);
  return f.flag.empty() ? "'" + key + "'" : fmt::format("'{}' ({})", key, f.flag);
}

}  // namespace dg::config

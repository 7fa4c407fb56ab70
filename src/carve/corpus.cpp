#include "carve/corpus.h"

#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/hash.h"
#include "core/json_text.h"
#include "core/pattern.h"
#include "format/safetensors.h"
#include "model/model_file.h"

namespace tapml {

namespace fs = std::filesystem;
using json = nlohmann::json;
using ordered_json = nlohmann::ordered_json;

namespace {

constexpr char kFormat[] = "tapml-corpus";
constexpr char kExportFormat[] = "tapml-test";
constexpr int kExportVersion = 1;
constexpr char kManifest[] = "manifest.json";
constexpr char kTensorsFile[] = "tensors.safetensors";
// Every SQLite 3 file starts with these 16 bytes (the 16th is a NUL).
constexpr char kSqliteMagic[16] = {'S', 'Q', 'L', 'i', 't', 'e', ' ', 'f',
                                   'o', 'r', 'm', 'a', 't', ' ', '3', '\0'};

// The blob's bytes come last in its row: SQLite stores a large value in overflow pages
// and has to walk them to reach any column after it, so the small columns go first.
constexpr const char* kSchema[] = {
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE blobs(hash TEXT PRIMARY KEY, dtype TEXT NOT NULL, nbytes INTEGER NOT NULL,"
    " ref_model TEXT, ref_tensor TEXT, bytes BLOB)",
    "CREATE TABLE tests(id INTEGER PRIMARY KEY, op TEXT NOT NULL, attrs TEXT NOT NULL,"
    " site TEXT NOT NULL, layer INTEGER NOT NULL, phase TEXT NOT NULL,"
    " call_index INTEGER NOT NULL, prompt_index INTEGER NOT NULL, signature TEXT NOT NULL,"
    " kept_because TEXT NOT NULL, noise TEXT NOT NULL)",
    "CREATE TABLE tensors(test_id INTEGER NOT NULL, role TEXT NOT NULL CHECK(role IN "
    "('in', 'out')), idx INTEGER NOT NULL, dtype TEXT NOT NULL, shape TEXT NOT NULL,"
    " blob_hash TEXT NOT NULL, weight TEXT NOT NULL DEFAULT '', PRIMARY KEY(test_id, role, idx))"
    " WITHOUT ROWID",
    "CREATE INDEX tests_op ON tests(op)",
};

double json_number(const json& j) {
  return j.is_null() ? std::numeric_limits<double>::quiet_NaN() : j.get<double>();
}

json attrs_json(const Attrs& a) {
  json pairs = json::array();
  for (auto& [k, v] : a.items()) pairs.push_back({k, v});
  return pairs;
}

// [[name, value], ...] -> Attrs; false when malformed.
bool attrs_from_json(const json& j, Attrs* out) {
  if (!j.is_array()) return false;
  for (const json& p : j) {
    if (!p.is_array() || p.size() != 2 || !p[0].is_string() ||
        !(p[1].is_number() || p[1].is_null()))
      return false;
    out->set(p[0].get<std::string>(), json_number(p[1]));
  }
  return true;
}

// A shape as JSON; false when malformed or absurd.
bool shape_from_json(const json& j, Shape* out) {
  if (!j.is_array() || j.size() > Shape::kMaxRank) return false;
  std::vector<int64_t> dims;
  uint64_t numel = 1;
  for (const json& d : j) {
    if (!d.is_number_unsigned()) return false;
    uint64_t x = d.get<uint64_t>();
    if (x != 0 && numel > (uint64_t(1) << 50) / x) return false;
    numel *= x;
    dims.push_back(int64_t(x));
  }
  *out = Shape(std::move(dims));
  return true;
}

std::string tensor_desc(DType t, const Shape& s) {
  return std::string(dtype_name(t)) + " " + s.str();
}

// The catalog's view of a test: the op exists, its inputs fit it, and the outputs are what
// it says they must be. Run before storing and after importing, so the corpus only ever
// holds tests a backend can be asked to run.
void check_test(const TestCase& t, const std::string& where) {
  const OpDef& def = op_def(t.op);
  auto fail = [&](const std::string& what) {
    return Error(where + ": " + std::string(def.name) + ": " + what);
  };
  if (!t.input_weights.empty() && t.input_weights.size() != t.inputs.size())
    throw fail("input_weights has " + std::to_string(t.input_weights.size()) + " entries for " +
               std::to_string(t.inputs.size()) + " inputs");
  if (!t.noise.empty() && t.noise.size() != t.outputs.size())
    throw fail("noise has " + std::to_string(t.noise.size()) + " entries for " +
               std::to_string(t.outputs.size()) + " outputs");
  std::vector<TensorType> in, out;
  for (size_t i = 0; i < t.inputs.size(); ++i) {
    if (t.inputs[i].empty() && t.inputs[i].nbytes() > 0)
      throw fail("input " + (i < def.inputs.size() ? def.inputs[i] : std::to_string(i)) +
                 " has no data");
    in.push_back({t.inputs[i].dtype(), t.inputs[i].shape()});
  }
  for (size_t i = 0; i < t.outputs.size(); ++i) {
    if (t.outputs[i].empty() && t.outputs[i].nbytes() > 0)
      throw fail("output " + (i < def.outputs.size() ? def.outputs[i] : std::to_string(i)) +
                 " has no data");
    out.push_back({t.outputs[i].dtype(), t.outputs[i].shape()});
  }
  try {
    validate_types(t.op, in, t.attrs, out);
  } catch (const Error& e) {
    throw Error(where + ": " + e.what());
  }
}

struct FileId {
  dev_t dev = 0;
  ino_t ino = 0;
  off_t size = 0;
  int64_t mtime_ns = 0;
  bool operator==(const FileId&) const = default;
};

bool file_id(const std::string& path, FileId* out) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return false;
  *out = {st.st_dev, st.st_ino, st.st_size,
          int64_t(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec};
  return true;
}

uint32_t be32(const unsigned char* p) {
  return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3];
}

// Checks what can be checked before SQLite sees the file, so that a foreign or cut-short
// file gets a message about the file rather than an SQLite error code.
void check_file_header(const std::string& path) {
  std::error_code ec;
  fs::file_status st = fs::status(path, ec);
  if (!fs::exists(st)) throw Error(path + ": no such corpus file");
  if (fs::is_directory(st)) throw Error(path + ": is a directory, not a corpus file");
  if (!fs::is_regular_file(st)) throw Error(path + ": not a regular file, not a corpus file");
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(path + ": cannot open for reading: " + std::strerror(errno));
  unsigned char h[100] = {};
  f.read(reinterpret_cast<char*>(h), sizeof h);
  size_t got = size_t(f.gcount());
  uint64_t size = fs::file_size(path, ec);
  if (got == 0) throw Error(path + ": empty file, not a TapML corpus");
  if (std::memcmp(h, kSqliteMagic, std::min(got, sizeof kSqliteMagic)) != 0)
    throw Error(path + ": not a TapML corpus (not an SQLite file)");
  if (got < sizeof h)
    throw Error(path + ": truncated corpus file (" + std::to_string(got) +
                " bytes, less than an SQLite header)");
  // The header's page count is trustworthy when the two change counters agree. With a log
  // beside the file (a write-ahead log, or a rollback journal left by a crash), pages may
  // legitimately live in the log, so the check is left to SQLite then.
  uint64_t page_size = (uint64_t(h[16]) << 8) | h[17];
  if (page_size == 1) page_size = 65536;
  uint32_t pages = be32(h + 28);
  bool counted = pages != 0 && std::memcmp(h + 24, h + 92, 4) == 0;
  // SQLite keeps its logs beside the file a symbolic link points to.
  std::string real = fs::canonical(path, ec).string();
  if (ec) real = path;
  bool logged = fs::exists(real + "-wal", ec) || fs::exists(real + "-journal", ec);
  if (counted && !logged && size < page_size * pages)
    throw Error(path + ": truncated corpus file (" + std::to_string(size) +
                " bytes, its header says " + std::to_string(page_size * pages) + ")");
}

// One connection with its prepared statements, and the model files that weights stored by
// reference point into.
struct Connection {
  sqlite3* handle = nullptr;
  std::string path;
  std::map<std::string, sqlite3_stmt*> statements;

  // Storing by reference: the model file, loaded on first use, and its weights' hashes.
  std::string ref_model;
  std::shared_ptr<const ModelFile> ref_source;
  std::map<std::string, std::string> ref_hashes;

  // Loading by reference: model files by path, reloaded when the file changes, and the
  // weights whose hash was verified against that very file.
  struct LoadedModel {
    FileId id;
    std::shared_ptr<const ModelFile> model;
    std::set<std::string> verified;  // "tensor\nhash"
  };
  std::map<std::string, LoadedModel> models;

  explicit Connection(std::string p) : path(std::move(p)) {}
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  ~Connection() {
    for (auto& [sql, s] : statements) sqlite3_finalize(s);
    if (handle) sqlite3_close_v2(handle);
  }

  // An Error naming the file and what SQLite said; damage gets words a user can act on.
  Error error(const std::string& doing, int rc) const {
    std::string msg = handle ? sqlite3_errmsg(handle) : sqlite3_errstr(rc);
    int primary = rc & 0xff;
    if (primary == SQLITE_CORRUPT || primary == SQLITE_NOTADB)
      return Error(path + ": damaged or truncated corpus file (SQLite: " + msg + ")");
    if (primary == SQLITE_FULL) return Error(path + ": disk full while " + doing);
    if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED)
      return Error(path + ": locked by another process while " + doing);
    return Error(path + ": " + doing + " failed (SQLite: " + msg + ")");
  }

  void exec(const char* sql, const char* doing) {
    char* message = nullptr;
    int rc = sqlite3_exec(handle, sql, nullptr, nullptr, &message);
    sqlite3_free(message);
    if (rc != SQLITE_OK) throw error(doing, rc);
  }

  sqlite3_stmt* prepare(const char* sql) {
    auto it = statements.find(sql);
    if (it != statements.end()) return it->second;
    sqlite3_stmt* s = nullptr;
    int rc = sqlite3_prepare_v2(handle, sql, -1, &s, nullptr);
    if (rc != SQLITE_OK) throw error("reading the corpus", rc);
    statements[sql] = s;
    return s;
  }

  void connect(int flags) {
    int rc = sqlite3_open_v2(path.c_str(), &handle, flags | SQLITE_OPEN_NOMUTEX, nullptr);
    if (rc != SQLITE_OK) throw error("opening", rc);
    sqlite3_extended_result_codes(handle, 1);
    // Another process (a second carve, a viewer) may hold the lock for a moment.
    sqlite3_busy_timeout(handle, 10000);
  }
};

// A prepared statement in use: bound, stepped, and reset when it goes out of scope so the
// cached statement is ready for the next use.
class Query {
 public:
  Query(Connection& db, const char* sql, const char* doing)
      : db_(db), s_(db.prepare(sql)), doing_(doing) {}
  ~Query() {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }
  Query& bind(int i, int64_t v) { return check(sqlite3_bind_int64(s_, i, v)); }
  // Text is copied (it is short, and often a temporary); a blob is bound in place and must
  // stay alive until step().
  Query& bind(int i, const std::string& v) {
    return check(sqlite3_bind_text64(s_, i, v.data(), v.size(), SQLITE_TRANSIENT, SQLITE_UTF8));
  }
  Query& bind_blob(int i, const void* p, size_t n) {
    static const char empty = 0;  // a zero-length blob, not SQL NULL
    return check(sqlite3_bind_blob64(s_, i, n ? p : &empty, n, SQLITE_STATIC));
  }
  Query& bind_null(int i) { return check(sqlite3_bind_null(s_, i)); }
  // True for a row, false when done.
  bool step() {
    int rc = sqlite3_step(s_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    throw db_.error(doing_, rc);
  }
  int64_t integer(int i) const { return sqlite3_column_int64(s_, i); }
  bool is_null(int i) const { return sqlite3_column_type(s_, i) == SQLITE_NULL; }
  std::string text(int i) const {
    const unsigned char* p = sqlite3_column_text(s_, i);
    return p ? std::string(reinterpret_cast<const char*>(p), size_t(sqlite3_column_bytes(s_, i)))
             : std::string();
  }

 private:
  Query& check(int rc) {
    if (rc != SQLITE_OK) throw db_.error(doing_, rc);
    return *this;
  }
  Connection& db_;
  sqlite3_stmt* s_;
  const char* doing_;
};

// BEGIN ... COMMIT, rolled back when left by an exception.
class Transaction {
 public:
  Transaction(Connection& db, bool write) : db_(db) {
    db.exec(write ? "BEGIN IMMEDIATE" : "BEGIN", write ? "writing" : "reading");
  }
  ~Transaction() {
    if (!done_) sqlite3_exec(db_.handle, "ROLLBACK", nullptr, nullptr, nullptr);
  }
  void commit() {
    db_.exec("COMMIT", "committing");
    done_ = true;
  }

 private:
  Connection& db_;
  bool done_ = false;
};

void check_schema(Connection& db) {
  std::set<std::string> tables;
  {
    Query q(db, "SELECT name FROM sqlite_master WHERE type = 'table'", "reading the schema");
    while (q.step()) tables.insert(q.text(0));
  }
  const std::string& p = db.path;
  if (!tables.count("meta"))
    throw Error(p + ": not a TapML corpus (an SQLite database without TapML's meta table)");
  std::map<std::string, std::string> meta;
  {
    Query q(db, "SELECT key, value FROM meta", "reading the meta table");
    while (q.step()) meta[q.text(0)] = q.text(1);
  }
  if (meta["format"] != kFormat)
    throw Error(p + ": not a TapML corpus (its meta table says format '" + meta["format"] + "')");
  const std::string& v = meta["schema_version"];
  char* end = nullptr;
  long version = std::strtol(v.c_str(), &end, 10);
  if (v.empty() || *end != 0 || version < 1)
    throw Error(p + ": damaged corpus: schema version '" + v + "'");
  if (version > Corpus::kSchemaVersion)
    throw Error(p + ": schema version " + v + ", this build reads " +
                std::to_string(Corpus::kSchemaVersion) + " (a newer TapML wrote it)");
  for (const char* t : {"blobs", "tests", "tensors"})
    if (!tables.count(t))
      throw Error(p + ": damaged corpus: table '" + std::string(t) + "' is missing");
}

// Settings of the connection (not the file) for appending: the write-ahead log makes a
// commit one append without fsync while keeping every transaction atomic if the process
// dies; NORMAL durability only risks the last commits on a power cut, never consistency.
void configure_for_writing(Connection& db) {
  if (sqlite3_db_readonly(db.handle, "main") == 1) return;  // a read-only file stays as it is
  db.exec("PRAGMA journal_mode = WAL", "switching to the write-ahead log");
  db.exec("PRAGMA synchronous = NORMAL", "configuring");
}

}  // namespace

struct Corpus::Db : Connection {
  using Connection::Connection;
};

Corpus::Corpus(Corpus&&) noexcept = default;
Corpus& Corpus::operator=(Corpus&&) noexcept = default;
Corpus::~Corpus() = default;

Corpus Corpus::create(const std::string& path, bool overwrite) {
  std::error_code ec;
  fs::file_status st = fs::symlink_status(path, ec);
  if (fs::exists(st)) {
    if (!overwrite)
      throw Error(path + ": already exists (choose another path, or --overwrite to replace it)");
    if (fs::is_directory(st)) throw Error(path + ": is a directory, not a corpus file");
  }
  // The schema is built in a temporary file that is renamed into place, so the path never
  // holds a half-made corpus.
  std::string tmp = path + ".tmp.XXXXXX";
  int fd = ::mkstemp(tmp.data());
  if (fd < 0)
    throw Error(path + ": cannot create a file beside it: " + std::string(std::strerror(errno)));
  ::fchmod(fd, 0644);
  ::close(fd);
  struct Cleanup {
    std::string tmp;
    bool keep = false;
    ~Cleanup() {
      if (!keep)
        for (const char* suffix : {"", "-wal", "-shm", "-journal"})
          ::unlink((tmp + suffix).c_str());
    }
  } cleanup{tmp};
  {
    Connection db(tmp);
    db.connect(SQLITE_OPEN_READWRITE);
    db.path = path;  // messages name the corpus, not the temporary file
    configure_for_writing(db);
    Transaction tx(db, true);
    for (const char* sql : kSchema) db.exec(sql, "creating the schema");
    Query(db, "INSERT INTO meta(key, value) VALUES ('format', ?), ('schema_version', ?)",
          "creating the schema")
        .bind(1, std::string(kFormat))
        .bind(2, std::to_string(kSchemaVersion))
        .step();
    tx.commit();
  }  // closing checkpoints the log into the file and removes it
  if (overwrite)
    for (const char* suffix : {"-wal", "-shm", "-journal"}) ::unlink((path + suffix).c_str());
  if (::rename(tmp.c_str(), path.c_str()) != 0)
    throw Error(path + ": cannot rename into place: " + std::string(std::strerror(errno)));
  cleanup.keep = true;
  return open(path);
}

Corpus Corpus::open(const std::string& path) {
  check_file_header(path);
  Corpus c;
  c.path_ = path;
  c.db_ = std::make_unique<Db>(path);
  // Without SQLITE_OPEN_CREATE: a path that vanished since the check is an error, not a new
  // empty database.
  c.db_->connect(SQLITE_OPEN_READWRITE);
  check_schema(*c.db_);
  configure_for_writing(*c.db_);
  return c;
}

void Corpus::set_meta(const std::string& key, const std::string& value) {
  TAPML_REQUIRE(key != "format" && key != "schema_version",
                path_ + ": meta '" + key + "' belongs to the file format and cannot be set");
  Query(*db_, "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", "writing meta")
      .bind(1, key)
      .bind(2, value)
      .step();
}

bool Corpus::finished() const { return meta("complete").value_or("yes") != "no"; }

void Corpus::set_finished(bool done) {
  Query(*db_, "INSERT OR REPLACE INTO meta(key, value) VALUES ('complete', ?)", "writing meta")
      .bind(1, std::string(done ? "yes" : "no"))
      .step();
}

void Corpus::publish(const std::string& built, const std::string& target) {
  for (const char* suffix : {"-wal", "-shm", "-journal"}) ::unlink((target + suffix).c_str());
  if (::rename(built.c_str(), target.c_str()) != 0)
    throw Error(target + ": cannot move the new corpus " + built +
                " into place: " + std::string(std::strerror(errno)));
}

std::optional<std::string> Corpus::meta(const std::string& key) const {
  Query q(*db_, "SELECT value FROM meta WHERE key = ?", "reading meta");
  q.bind(1, key);
  if (!q.step()) return std::nullopt;
  return q.text(0);
}

void Corpus::store_weights_by_reference(const std::string& model_path) {
  std::error_code ec;
  fs::path abs = fs::absolute(model_path, ec);
  TAPML_REQUIRE(!ec && (fs::is_regular_file(abs, ec) || fs::is_directory(abs, ec)),
                model_path + ": no such model file or folder (to store weights by reference)");
  db_->ref_model = abs.lexically_normal().string();
  db_->ref_source.reset();
  db_->ref_hashes.clear();
}

int64_t Corpus::add(const TestCase& test) {
  Db& db = *db_;
  check_test(test, path_);
  const OpDef& def = op_def(test.op);
  // Hashing and reference checks happen before the write lock is taken.
  struct Item {
    const Tensor* tensor;
    std::string hash;
    std::string ref_tensor;  // non-empty: stored by reference
  };
  auto item = [&](const Tensor& t) { return Item{&t, content_hash(t.bytes(), t.nbytes()), ""}; };
  std::vector<Item> ins, outs;
  for (const Tensor& t : test.inputs) ins.push_back(item(t));
  for (const Tensor& t : test.outputs) outs.push_back(item(t));

  if (!db.ref_model.empty()) {
    for (size_t i = 0; i < ins.size(); ++i) {
      std::string name = i < test.input_weights.size() ? test.input_weights[i] : "";
      if (name.empty()) continue;
      if (!db.ref_source)
        db.ref_source = std::make_shared<const ModelFile>(load_model(db.ref_model));
      auto w = db.ref_source->weights.find(name);
      if (w == db.ref_source->weights.end()) continue;
      auto [h, fresh] = db.ref_hashes.try_emplace(name);
      if (fresh) h->second = content_hash(w->second.bytes(), w->second.nbytes());
      // Only a weight that is byte for byte the model's is stored as a reference; one the
      // runtime converted on the way (another dtype) is stored as bytes.
      if (h->second == ins[i].hash && w->second.dtype() == ins[i].tensor->dtype())
        ins[i].ref_tensor = name;
    }
  }

  const int64_t limit = sqlite3_limit(db.handle, SQLITE_LIMIT_LENGTH, -1);
  Transaction tx(db, true);
  auto store_blob = [&](const Item& it, const std::string& what) {
    const Tensor& t = *it.tensor;
    {
      Query exists(db, "SELECT 1 FROM blobs WHERE hash = ?", "looking up a blob");
      if (exists.bind(1, it.hash).step()) return;
    }
    Query q(db,
            "INSERT INTO blobs(hash, dtype, nbytes, ref_model, ref_tensor, bytes)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            "storing tensor bytes");
    q.bind(1, it.hash).bind(2, std::string(dtype_name(t.dtype()))).bind(3, int64_t(t.nbytes()));
    if (!it.ref_tensor.empty()) {
      q.bind(4, db.ref_model).bind(5, it.ref_tensor).bind_null(6);
    } else {
      // The limit is on the whole row; the other columns take well under a page.
      if (int64_t(t.nbytes()) > limit - 4096)
        throw Error(path_ + ": " + what + " of " + std::to_string(t.nbytes()) +
                    " bytes is larger than SQLite's limit of " + std::to_string(limit) +
                    " bytes; store weights by reference");
      q.bind_null(4).bind_null(5).bind_blob(6, t.bytes(), t.nbytes());
    }
    q.step();
  };
  for (size_t i = 0; i < ins.size(); ++i) store_blob(ins[i], "input " + def.inputs[i]);
  for (size_t i = 0; i < outs.size(); ++i) store_blob(outs[i], "output " + def.outputs[i]);

  json noise = json::array();
  for (double n : test.noise) noise.push_back(n);
  Query(db,
        "INSERT INTO tests(op, attrs, site, layer, phase, call_index, prompt_index, signature,"
        " kept_because, noise) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        "storing a test")
      .bind(1, std::string(op_name(test.op)))
      .bind(2, json_text(attrs_json(test.attrs)))
      .bind(3, test.site.str())
      .bind(4, test.site.layer)
      .bind(5, test.phase.str())
      .bind(6, test.call_index)
      .bind(7, test.prompt_index)
      .bind(8, test.signature())
      .bind(9, test.kept_because)
      .bind(10, json_text(noise))
      .step();
  const int64_t id = sqlite3_last_insert_rowid(db.handle);
  auto store_tensor = [&](const Item& it, const char* role, size_t idx, const std::string& weight) {
    const Tensor& t = *it.tensor;
    Query(db,
          "INSERT INTO tensors(test_id, role, idx, dtype, shape, blob_hash, weight)"
          " VALUES (?, ?, ?, ?, ?, ?, ?)",
          "storing a test's tensors")
        .bind(1, id)
        .bind(2, std::string(role))
        .bind(3, int64_t(idx))
        .bind(4, std::string(dtype_name(t.dtype())))
        .bind(5, json_text(json(t.shape().dims())))
        .bind(6, it.hash)
        .bind(7, weight)
        .step();
  };
  for (size_t i = 0; i < ins.size(); ++i)
    store_tensor(ins[i], "in", i, i < test.input_weights.size() ? test.input_weights[i] : "");
  for (size_t i = 0; i < outs.size(); ++i) store_tensor(outs[i], "out", i, "");
  tx.commit();
  return id;
}

std::vector<TestInfo> Corpus::list(const std::string& op_regex,
                                   const std::string& site_regex) const {
  const Pattern op_re(op_regex, "op filter"), site_re(site_regex, "site filter");
  std::vector<TestInfo> out;
  Query q(*db_,
          "SELECT id, op, site, layer, phase, call_index, prompt_index, signature, kept_because"
          " FROM tests ORDER BY id",
          "listing tests");
  while (q.step()) {
    TestInfo t;
    t.id = q.integer(0);
    t.op = q.text(1);
    t.site = q.text(2);
    t.layer = int(q.integer(3));
    t.phase = q.text(4);
    t.call_index = q.integer(5);
    t.prompt_index = int(q.integer(6));
    t.signature = q.text(7);
    t.kept_because = q.text(8);
    if (!op_re.search(t.op) || !site_re.search(t.site)) continue;
    out.push_back(std::move(t));
  }
  return out;
}

namespace {

// A weight stored by reference, taken from its model file and checked against the hash the
// corpus recorded. Borrows the mapped file.
Tensor referenced_weight(Connection& db, const std::string& model, const std::string& name,
                         const std::string& hash, DType dtype, const Shape& shape) {
  const std::string what = db.path + ": weight " + name + " of " + model;
  FileId id;
  if (!file_id(model, &id)) throw Error(what + ": model file " + model + " is gone");
  Connection::LoadedModel& m = db.models[model];
  if (!m.model || !(m.id == id)) {
    m.verified.clear();
    m.model.reset();
    try {
      m.model = std::make_shared<const ModelFile>(load_model(model));
    } catch (const Error& e) {
      throw Error(what + " cannot be read: " + e.what());
    }
    m.id = id;
  }
  auto w = m.model->weights.find(name);
  if (w == m.model->weights.end()) throw Error(what + " has changed (the file no longer has it)");
  const Tensor& t = w->second;
  if (t.dtype() != dtype || t.shape() != shape)
    throw Error(what + " has changed (it is now " + tensor_desc(t.dtype(), t.shape()) +
                ", the corpus expects " + tensor_desc(dtype, shape) + ")");
  std::string key = name + "\n" + hash;
  if (!m.verified.count(key)) {
    std::string now = content_hash(t.bytes(), t.nbytes());
    if (now != hash)
      throw Error(what + " has changed (hash " + now + ", the corpus stored " + hash + ")");
    m.verified.insert(key);
  }
  return t;
}

}  // namespace

TestCase Corpus::load(int64_t id) const {
  Db& db = *db_;
  const std::string where = path_ + ": test " + std::to_string(id);
  auto damaged = [&](const std::string& what) { return Error(where + ": damaged: " + what); };
  Transaction tx(db, false);  // one snapshot for both queries
  TestCase t;
  t.id = id;
  {
    Query q(db,
            "SELECT op, attrs, site, layer, phase, call_index, prompt_index, kept_because, noise"
            " FROM tests WHERE id = ?",
            "loading a test");
    q.bind(1, id);
    if (!q.step()) throw Error(path_ + ": no test with id " + std::to_string(id));
    std::optional<Op> op = find_op(q.text(0));
    if (!op)
      throw damaged("test " + std::to_string(id) + " has op '" + q.text(0) +
                    "', which this build does not know");
    t.op = *op;
    json attrs = json::parse(q.text(1), nullptr, false);
    if (!attrs_from_json(attrs, &t.attrs)) throw damaged("bad attrs " + q.text(1));
    // The layer column repeats what the site's name says; both must agree.
    try {
      t.site = Site::parse(q.text(2));
      t.phase = Phase::parse(q.text(4));
    } catch (const Error& e) {
      throw damaged("test " + std::to_string(id) + ": " + e.what());
    }
    if (t.site.layer != int(q.integer(3)))
      throw damaged("test " + std::to_string(id) + ": site " + t.site.str() + " is not in layer " +
                    std::to_string(q.integer(3)));
    t.call_index = q.integer(5);
    t.prompt_index = int(q.integer(6));
    t.kept_because = q.text(7);
    json noise = json::parse(q.text(8), nullptr, false);
    if (!noise.is_array()) throw damaged("bad noise " + q.text(8));
    for (const json& n : noise) {
      if (!n.is_number() && !n.is_null()) throw damaged("bad noise " + q.text(8));
      t.noise.push_back(json_number(n));
    }
  }
  Query q(db,
          "SELECT t.role, t.idx, t.dtype, t.shape, t.blob_hash, t.weight, b.hash, b.nbytes,"
          " b.ref_model, b.ref_tensor, b.bytes IS NULL, b.rowid"
          " FROM tensors t LEFT JOIN blobs b ON b.hash = t.blob_hash"
          " WHERE t.test_id = ? ORDER BY t.role, t.idx",
          "loading a test's tensors");
  q.bind(1, id);
  while (q.step()) {
    std::string role = q.text(0);
    std::vector<Tensor>& list = role == "in" ? t.inputs : t.outputs;
    std::string name = role + "." + std::to_string(q.integer(1));
    if ((role != "in" && role != "out") || q.integer(1) != int64_t(list.size()))
      throw damaged("tensor " + name + " out of sequence");
    DType dtype;
    try {
      dtype = dtype_from_name(q.text(2));
    } catch (const Error&) {
      throw damaged(name + " has dtype '" + q.text(2) + "'");
    }
    Shape shape;
    if (!shape_from_json(json::parse(q.text(3), nullptr, false), &shape))
      throw damaged(name + " has shape " + q.text(3));
    std::string hash = q.text(4);
    if (q.is_null(6)) throw damaged(name + " refers to blob " + hash + ", which is missing");
    uint64_t nbytes;
    try {
      nbytes = uint64_t(tensor_bytes(dtype, shape));
    } catch (const Error& e) {
      throw damaged(name + ": " + e.what());
    }
    if (q.integer(7) < 0 || uint64_t(q.integer(7)) != nbytes)
      throw damaged(name + " is " + tensor_desc(dtype, shape) + " but its blob holds " +
                    std::to_string(q.integer(7)) + " bytes");
    if (q.integer(10)) {
      if (q.is_null(8) || q.is_null(9))
        throw damaged(name + ": blob " + hash + " has neither bytes nor a model reference");
      list.push_back(referenced_weight(db, q.text(8), q.text(9), hash, dtype, shape));
    } else {
      // Read straight into the tensor: a large value is not held twice in memory.
      Tensor x(dtype, shape);
      sqlite3_blob* blob = nullptr;
      int rc = sqlite3_blob_open(db.handle, "main", "blobs", "bytes", q.integer(11), 0, &blob);
      std::unique_ptr<sqlite3_blob, int (*)(sqlite3_blob*)> closer(blob, &sqlite3_blob_close);
      if (rc != SQLITE_OK) {
        if ((rc & 0xff) == SQLITE_ERROR)  // the value is not a blob at all
          throw damaged(name + ": blob " + hash + ": " + sqlite3_errmsg(db.handle));
        throw db.error("loading a test's tensors", rc);
      }
      if (uint64_t(sqlite3_blob_bytes(blob)) != nbytes)
        throw damaged(name + ": blob " + hash + " holds " +
                      std::to_string(sqlite3_blob_bytes(blob)) + " bytes, not " +
                      std::to_string(nbytes));
      for (uint64_t done = 0; done < nbytes;) {
        int n = int(std::min<uint64_t>(nbytes - done, 1 << 30));
        rc = sqlite3_blob_read(blob, x.mutable_bytes() + done, n, int(done));
        if (rc != SQLITE_OK) throw db.error("loading a test's tensors", rc);
        done += uint64_t(n);
      }
      // A flipped page would otherwise hand a replay wrong inputs without a word.
      if (content_hash(x.bytes(), nbytes) != hash)
        throw damaged(name + ": blob " + hash + " no longer matches its hash");
      list.push_back(std::move(x));
    }
    if (role == "in") t.input_weights.push_back(q.text(5));
  }
  tx.commit();
  if (t.inputs.empty() && t.outputs.empty()) throw damaged("it has no tensors");
  return t;
}

std::vector<TestOutline> Corpus::outlines() const {
  Db& db = *db_;
  auto damaged = [&](int64_t id, const std::string& what) {
    return Error(path_ + ": test " + std::to_string(id) + ": damaged: " + what);
  };
  Transaction tx(db, false);  // one snapshot for both queries
  std::vector<TestOutline> out;
  std::map<int64_t, size_t> index;
  {
    Query q(db,
            "SELECT id, op, attrs, site, phase, prompt_index, kept_because FROM tests ORDER BY id",
            "listing tests");
    while (q.step()) {
      TestOutline t;
      t.id = q.integer(0);
      std::optional<Op> op = find_op(q.text(1));
      if (!op) throw damaged(t.id, "op '" + q.text(1) + "', which this build does not know");
      t.op = *op;
      if (!attrs_from_json(json::parse(q.text(2), nullptr, false), &t.attrs))
        throw damaged(t.id, "bad attrs " + q.text(2));
      try {
        t.site = Site::parse(q.text(3));
        t.phase = Phase::parse(q.text(4));
      } catch (const Error& e) {
        throw damaged(t.id, e.what());
      }
      t.prompt_index = int(q.integer(5));
      t.kept_because = q.text(6);
      index[t.id] = out.size();
      out.push_back(std::move(t));
    }
  }
  Query q(db, "SELECT test_id, role, idx, dtype, shape FROM tensors ORDER BY test_id, role, idx",
          "listing tests' tensors");
  while (q.step()) {
    auto it = index.find(q.integer(0));
    if (it == index.end()) continue;  // a tensor row of no test says nothing about coverage
    TestOutline& t = out[it->second];
    std::vector<TensorType>& list = q.text(1) == "in" ? t.inputs : t.outputs;
    const std::string name = q.text(1) + "." + std::to_string(q.integer(2));
    if (q.integer(2) != int64_t(list.size()))
      throw damaged(t.id, "tensor " + name + " out of sequence");
    TensorType type;
    try {
      type.dtype = dtype_from_name(q.text(3));
    } catch (const Error&) {
      throw damaged(t.id, name + " has dtype '" + q.text(3) + "'");
    }
    if (!shape_from_json(json::parse(q.text(4), nullptr, false), &type.shape))
      throw damaged(t.id, name + " has shape " + q.text(4));
    list.push_back(std::move(type));
  }
  tx.commit();
  for (const TestOutline& t : out)
    if (t.inputs.size() < op_def(t.op).required_inputs() ||
        t.outputs.size() != op_def(t.op).outputs.size())
      throw damaged(t.id, "it has " + std::to_string(t.inputs.size()) + " inputs and " +
                              std::to_string(t.outputs.size()) + " outputs");
  return out;
}

CorpusSummary Corpus::summary() const {
  Db& db = *db_;
  CorpusSummary s;
  Transaction tx(db, false);
  {
    Query q(db, "SELECT op, COUNT(*) FROM tests GROUP BY op", "summarizing");
    while (q.step()) {
      s.tests_per_op[q.text(0)] = q.integer(1);
      s.tests += q.integer(1);
    }
  }
  {
    // `bytes IS NULL` reads only the row header, not the blob's overflow pages.
    Query q(db,
            "SELECT COUNT(*), TOTAL(CASE WHEN bytes IS NULL THEN 0 ELSE nbytes END),"
            " TOTAL(CASE WHEN bytes IS NULL THEN nbytes ELSE 0 END) FROM blobs",
            "summarizing");
    q.step();
    s.blobs = q.integer(0);
    s.blob_bytes = q.integer(1);
    s.referenced_bytes = q.integer(2);
  }
  {
    Query q(db, "SELECT key, value FROM meta", "summarizing");
    while (q.step()) s.meta[q.text(0)] = q.text(1);
  }
  tx.commit();
  std::error_code ec;
  for (const char* suffix : {"", "-wal"}) {
    uint64_t n = fs::file_size(path_ + suffix, ec);
    if (!ec) s.file_bytes += int64_t(n);
  }
  return s;
}

void Corpus::export_test(int64_t id, const std::string& folder) const {
  TestCase t = load(id);
  const OpDef& def = op_def(t.op);
  std::error_code ec;
  fs::file_status st = fs::status(folder, ec);
  if (fs::exists(st)) {
    if (!fs::is_directory(st)) throw Error(folder + ": exists and is not a folder");
    // Only an earlier export (or what an interrupted one left) may be written over.
    bool ours = true, has_manifest = false;
    for (const fs::directory_entry& e : fs::directory_iterator(folder, ec)) {
      std::string name = e.path().filename().string();
      has_manifest = has_manifest || name == kManifest;
      ours = ours && (name == kManifest || name == kTensorsFile ||
                      name.starts_with(std::string(kManifest) + ".tmp.") ||
                      name.starts_with(std::string(kTensorsFile) + ".tmp."));
    }
    if (ec) throw Error(folder + ": cannot list: " + ec.message());
    if (!ours && !has_manifest)
      throw Error(folder + ": not empty and not an earlier export (no " + kManifest +
                  "); choose an empty or new folder");
  } else {
    fs::create_directories(folder, ec);
    if (ec) throw Error(folder + ": cannot create: " + ec.message());
  }
  // The old manifest goes first: until the new one lands, the folder reads as incomplete
  // rather than as an old manifest over new tensors.
  fs::remove(fs::path(folder) / kManifest, ec);

  std::vector<safetensors::Entry> entries;
  ordered_json inputs = ordered_json::array(), outputs = ordered_json::array();
  for (size_t i = 0; i < t.inputs.size(); ++i) {
    std::string name = "in." + std::to_string(i) + "." + def.inputs[i];
    entries.push_back({name, t.inputs[i]});
    inputs.push_back({{"name", def.inputs[i]},
                      {"tensor", name},
                      {"dtype", dtype_name(t.inputs[i].dtype())},
                      {"shape", t.inputs[i].shape().dims()},
                      {"weight", i < t.input_weights.size() ? t.input_weights[i] : ""}});
  }
  for (size_t i = 0; i < t.outputs.size(); ++i) {
    std::string name = "out." + std::to_string(i) + "." + def.outputs[i];
    entries.push_back({name, t.outputs[i]});
    outputs.push_back({{"name", def.outputs[i]},
                       {"tensor", name},
                       {"dtype", dtype_name(t.outputs[i].dtype())},
                       {"shape", t.outputs[i].shape().dims()}});
  }
  ordered_json attrs = ordered_json::object(), pairs = ordered_json::array();
  for (auto& [k, v] : t.attrs.items()) {
    attrs[k] = v;
    pairs.push_back({k, v});
  }
  ordered_json noise = ordered_json::array();
  for (double n : t.noise) noise.push_back(n);
  ordered_json m;
  m["format"] = kExportFormat;
  m["version"] = kExportVersion;
  m["op"] = std::string(op_name(t.op));
  m["attrs"] = attrs;
  m["attr_pairs"] = pairs;  // the order, for readers whose JSON objects do not keep it
  m["site"] = t.site.str();
  m["layer"] = t.site.layer;
  m["phase"] = t.phase.str();
  m["call_index"] = t.call_index;
  m["prompt_index"] = t.prompt_index;
  m["signature"] = t.signature();
  m["kept_because"] = t.kept_because;
  m["noise"] = noise;
  m["inputs"] = inputs;
  m["outputs"] = outputs;
  m["tensors_file"] = kTensorsFile;
  m["source"] = {{"corpus", path_}, {"test_id", id}};

  safetensors::write((fs::path(folder) / kTensorsFile).string(), entries,
                     {{"format", kExportFormat},
                      {"version", std::to_string(kExportVersion)},
                      {"op", std::string(op_name(t.op))},
                      {"site", t.site.str()},
                      {"signature", t.signature()}});
  std::string text = m.dump(2, ' ', false, ordered_json::error_handler_t::replace) + "\n";
  write_file_atomically((fs::path(folder) / kManifest).string(), text);
}

TestCase Corpus::import_test(const std::string& folder) {
  const std::string manifest_path = (fs::path(folder) / kManifest).string();
  auto fail = [&](const std::string& what) { return Error(manifest_path + ": " + what); };
  std::error_code ec;
  if (!fs::is_directory(folder, ec)) throw Error(folder + ": no such folder");
  if (!fs::exists(manifest_path, ec))
    throw Error(folder + ": not a TapML test export (no " + kManifest + ")");
  std::ifstream f(manifest_path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  if (!f) throw Error(manifest_path + ": cannot read");
  ordered_json m = ordered_json::parse(ss.str(), nullptr, false);
  if (m.is_discarded() || !m.is_object()) throw fail("not a JSON object");
  if (!m.contains("format") || m["format"] != kExportFormat)
    throw fail("not a TapML test manifest (format " +
               (m.contains("format") ? json_text(m["format"]) : std::string("missing")) + ")");
  if (!m.contains("version") || !m["version"].is_number_integer() ||
      m["version"].get<int64_t>() < 1)
    throw fail("bad version " + (m.contains("version") ? json_text(m["version"]) : "(missing)"));
  if (m["version"].get<int64_t>() > kExportVersion)
    throw fail("manifest version " + json_text(m["version"]) + ", this build reads " +
               std::to_string(kExportVersion));
  auto field = [&](const char* key) -> const ordered_json& {
    if (!m.contains(key)) throw fail(std::string("lacks '") + key + "'");
    return m[key];
  };
  auto string_of = [&](const char* key, const std::string& fallback = "") {
    if (!m.contains(key) && !fallback.empty()) return fallback;
    const ordered_json& v = field(key);
    if (!v.is_string()) throw fail(std::string("'") + key + "' is not a string");
    return v.get<std::string>();
  };
  auto integer_of = [&](const char* key) {
    const ordered_json& v = field(key);
    if (!v.is_number_integer()) throw fail(std::string("'") + key + "' is not an integer");
    return v.get<int64_t>();
  };

  TestCase t;
  try {
    t.op = parse_op(string_of("op"));
  } catch (const Error& e) {
    throw fail(e.what());
  }
  const OpDef* def = &op_def(t.op);
  // The ordered pairs are authoritative; the object is for readers and must agree.
  if (m.contains("attr_pairs")) {
    json pairs = json::parse(json_text(m["attr_pairs"]));
    if (!attrs_from_json(pairs, &t.attrs)) throw fail("'attr_pairs' is not [[name, value], ...]");
  }
  if (m.contains("attrs")) {
    const ordered_json& a = m["attrs"];
    if (!a.is_object()) throw fail("'attrs' is not an object");
    Attrs from_object;
    for (auto& [k, v] : a.items()) {
      if (!v.is_number() && !v.is_null()) throw fail("attribute '" + k + "' is not a number");
      from_object.set(k, json_number(v));
    }
    if (!m.contains("attr_pairs")) {
      t.attrs = from_object;
    } else {
      bool agree = from_object.items().size() == t.attrs.items().size();
      for (auto& [k, v] : from_object.items()) {
        double w = t.attrs.has(k) ? t.attrs.get(k) : std::nan("");
        agree = agree && t.attrs.has(k) && (v == w || (std::isnan(v) && std::isnan(w)));
      }
      if (!agree) throw fail("'attrs' and 'attr_pairs' disagree");
    }
  }
  try {
    t.site = Site::parse(string_of("site"));
    t.phase = Phase::parse(string_of("phase"));
  } catch (const Error& e) {
    throw fail(e.what());
  }
  if (t.site.layer != integer_of("layer"))
    throw fail("'layer' " + std::to_string(integer_of("layer")) + " disagrees with site " +
               t.site.str());
  t.call_index = integer_of("call_index");
  t.prompt_index = int(integer_of("prompt_index"));
  t.kept_because = m.contains("kept_because") ? string_of("kept_because") : "";
  if (m.contains("noise")) {
    if (!m["noise"].is_array()) throw fail("'noise' is not an array");
    for (const ordered_json& n : m["noise"]) {
      if (!n.is_number() && !n.is_null()) throw fail("'noise' holds " + json_text(n));
      t.noise.push_back(n.is_null() ? std::nan("") : n.get<double>());
    }
  }

  const std::string tensors_file = string_of("tensors_file", kTensorsFile);
  if (tensors_file.find('/') != std::string::npos || tensors_file == "." || tensors_file == "..")
    throw fail("'tensors_file' must name a file in the folder, not " + tensors_file);
  const std::string tensors_path = (fs::path(folder) / tensors_file).string();
  safetensors::Contents contents = safetensors::read(tensors_path);
  std::set<std::string> used;
  // `least`: how many of `names` a test must have (an op's optional inputs may be absent).
  auto take = [&](const char* list_key, const std::vector<std::string>& names, size_t least,
                  const char* prefix, std::vector<Tensor>* out, std::vector<std::string>* weights) {
    const ordered_json& list = field(list_key);
    if (!list.is_array()) throw fail(std::string("'") + list_key + "' is not an array");
    if (list.size() < least || list.size() > names.size())
      throw fail(std::string("'") + list_key + "' lists " + std::to_string(list.size()) +
                 " tensors; " + std::string(def->name) + " has " +
                 (least == names.size() ? "" : std::to_string(least) + " to ") +
                 std::to_string(names.size()));
    for (size_t i = 0; i < list.size(); ++i) {
      const ordered_json& e = list[i];
      std::string where = std::string(list_key) + "[" + std::to_string(i) + "]";
      if (!e.is_object() || !e.contains("name") || !e.contains("dtype") || !e.contains("shape"))
        throw fail(where + " needs name, dtype and shape");
      if (e["name"] != names[i])
        throw fail(where + " is " + json_text(e["name"]) + "; " + std::string(def->name) +
                   " calls it '" + names[i] + "'");
      std::string tensor_name = prefix + std::to_string(i) + "." + names[i];
      if (e.contains("tensor") && e["tensor"] != tensor_name)
        throw fail(where + " names tensor " + json_text(e["tensor"]) + ", expected '" +
                   tensor_name + "'");
      DType dtype;
      try {
        dtype = dtype_from_name(e["dtype"].is_string() ? e["dtype"].get<std::string>() : "?");
      } catch (const Error& err) {
        throw fail(where + ": " + err.what());
      }
      Shape shape;
      if (!shape_from_json(json::parse(json_text(e["shape"])), &shape))
        throw fail(where + " has a bad shape " + json_text(e["shape"]));
      const Tensor* x = contents.find(tensor_name);
      if (!x) throw Error(tensors_path + ": tensor '" + tensor_name + "' is missing");
      if (x->dtype() != dtype || x->shape() != shape)
        throw Error(tensors_path + ": tensor '" + tensor_name + "' is " +
                    tensor_desc(x->dtype(), x->shape()) + " but the manifest says " +
                    tensor_desc(dtype, shape));
      used.insert(tensor_name);
      out->push_back(*x);
      if (weights) {
        if (e.contains("weight") && !e["weight"].is_string())
          throw fail(where + " has a weight that is not a string");
        weights->push_back(e.contains("weight") ? e["weight"].get<std::string>() : "");
      }
    }
  };
  take("inputs", def->inputs, def->required_inputs(), "in.", &t.inputs, &t.input_weights);
  take("outputs", def->outputs, def->outputs.size(), "out.", &t.outputs, nullptr);
  for (const safetensors::Entry& e : contents.tensors)
    if (!used.count(e.name))
      throw Error(tensors_path + ": tensor '" + e.name + "' is not in the manifest");
  check_test(t, folder);
  return t;
}

}  // namespace tapml

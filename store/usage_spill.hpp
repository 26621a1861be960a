#pragma once
// The usage log's overflow file: an append-only local file of encoded usage events, one COPY
// text line each (the same bytes the writer sends to PostgreSQL, event id included). Events go
// here when the in-memory backlog is past its bound while PostgreSQL is away, and at shutdown
// when they could not be written in time; the writer replays the file when PostgreSQL answers
// again (also after a restart), then empties it. A replay that is cut short is simply replayed
// again: event ids make the second write a no-op. A custom target (usage_custom.hpp) has no
// event ids: there the file keeps its replay position (ReplayPosition::in_file): what is
// consumed is punched out (a hole, read as NUL bytes), and opening skips the leading NULs, so a
// restart replays only what was not stored yet.
//
// The file is locked (flock) while open, so two processes never share one. A line torn by a
// crash mid-append is cut off when the file is opened. Blocking file I/O: use it from the
// writer's own thread, never a request worker. Results as values (an error message, empty
// when fine).
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace keygate::store {

class UsageSpill {
 public:
  // Where the replay position lives until the file is emptied: in memory only (a restart
  // replays the file from its start), or in the file too (see above).
  enum class ReplayPosition { in_memory, in_file };

  explicit UsageSpill(std::string path, ReplayPosition position = ReplayPosition::in_memory);
  ~UsageSpill();
  UsageSpill(const UsageSpill&) = delete;
  UsageSpill& operator=(const UsageSpill&) = delete;

  // Opens (creating it, mode 0600) and locks the file. Returns an error message naming the
  // file, or empty. `torn_bytes()` then tells how many bytes of a torn last line were cut.
  std::string open();
  bool is_open() const { return fd_ >= 0; }
  void close();

  // Appends `lines` (complete lines, each ending in '\n') in one write.
  std::string append(std::string_view lines);
  std::string sync();  // fsync

  struct Chunk {
    std::string data;        // complete lines
    std::size_t lines = 0;
    std::uint64_t end = 0;   // file offset just past `data`: pass to consumed() once stored
  };
  // Up to `max_lines` lines (and about `max_bytes`) from the replay position; nullopt with
  // `error` set on a read failure; an empty chunk when nothing is pending.
  std::optional<Chunk> read(std::size_t max_lines, std::size_t max_bytes, std::string& error);
  // Everything before `end` is stored. When that is the whole file, the file is emptied;
  // else, with ReplayPosition::in_file, it is punched out (an error is returned once, and the
  // position is then kept in memory only).
  std::string consumed(std::uint64_t end);

  std::uint64_t pending_bytes() const { return size_ - read_offset_; }
  bool pending() const { return pending_bytes() > 0; }
  std::uint64_t torn_bytes() const { return torn_bytes_; }
  const std::string& path() const { return path_; }

 private:
  std::string skip_replayed();  // in_file: read_offset_ past the leading NUL bytes

  std::string path_;
  ReplayPosition position_;
  bool punch_failed_ = false;
  int fd_ = -1;
  std::uint64_t size_ = 0;
  std::uint64_t read_offset_ = 0;
  std::uint64_t torn_bytes_ = 0;
};

}  // namespace keygate::store

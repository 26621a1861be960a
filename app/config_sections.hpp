#pragma once
// The sections of config.yaml, read into Config with each option validated where it stands.
#include "app/config.hpp"
#include "app/config_reader.hpp"

namespace keygate::app::configuration {

// The whole file (`root` is its top-level mapping) on top of the defaults.
Config read_config(const Reader& reader, const Entry& root);

// store: (app/config_store_section.cpp).
void read_store(const Reader& r, const Entry& section, Config::Store& target);

}  // namespace keygate::app::configuration

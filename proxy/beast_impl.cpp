// Beast is compiled once, here (BOOST_BEAST_SEPARATE_COMPILATION is set for the whole tree).
#include <boost/beast/src.hpp>

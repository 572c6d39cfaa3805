# FindTramontane: tramontane's C library (libtramontane.a / libtramontane.so and
# tramontane.h, as installed by scripts/build-c-lib.sh --prefix DIR).
#
#   list(APPEND CMAKE_MODULE_PATH <dir with this file>)   # or use the installed
#   find_package(Tramontane REQUIRED)                      # TramontaneConfig.cmake
#   target_link_libraries(app PRIVATE Tramontane::tramontane)
#
# Hints: Tramontane_ROOT (the install prefix), CMAKE_PREFIX_PATH.
# Option: Tramontane_USE_STATIC (default OFF): Tramontane::tramontane is then the static
# library; otherwise the shared one when it exists.
# Result: Tramontane_FOUND, Tramontane_VERSION (when known), Tramontane_INCLUDE_DIR,
# Tramontane_STATIC_LIBRARY, Tramontane_SHARED_LIBRARY, and the imported targets
# Tramontane::tramontane, Tramontane::static, Tramontane::shared (those found).
include(FindPackageHandleStandardArgs)
option(Tramontane_USE_STATIC "Link tramontane statically" OFF)

set(_tramontane_hints ${Tramontane_ROOT} $ENV{Tramontane_ROOT} ${_tramontane_prefix})
find_path(Tramontane_INCLUDE_DIR tramontane.h HINTS ${_tramontane_hints} PATH_SUFFIXES include)
find_library(Tramontane_STATIC_LIBRARY NAMES libtramontane.a tramontane.lib
    HINTS ${_tramontane_hints} PATH_SUFFIXES lib)
find_library(Tramontane_SHARED_LIBRARY NAMES libtramontane.so libtramontane.dylib
    HINTS ${_tramontane_hints} PATH_SUFFIXES lib)

if(Tramontane_USE_STATIC)
    set(_tramontane_lib Tramontane_STATIC_LIBRARY)
elseif(Tramontane_SHARED_LIBRARY)
    set(_tramontane_lib Tramontane_SHARED_LIBRARY)
else()
    set(_tramontane_lib Tramontane_STATIC_LIBRARY)
endif()
find_package_handle_standard_args(Tramontane
    REQUIRED_VARS ${_tramontane_lib} Tramontane_INCLUDE_DIR
    VERSION_VAR Tramontane_VERSION)

if(Tramontane_FOUND)
    # What a static link needs besides the archive (Rust's std on this target).
    if(NOT DEFINED _TRAMONTANE_NATIVE_LIBS)
        set(_TRAMONTANE_NATIVE_LIBS "-lgcc_s -lutil -lrt -lpthread -lm -ldl")
    endif()
    separate_arguments(_tramontane_native UNIX_COMMAND "${_TRAMONTANE_NATIVE_LIBS}")
    if(Tramontane_STATIC_LIBRARY AND NOT TARGET Tramontane::static)
        add_library(Tramontane::static STATIC IMPORTED)
        set_target_properties(Tramontane::static PROPERTIES
            IMPORTED_LOCATION "${Tramontane_STATIC_LIBRARY}"
            INTERFACE_INCLUDE_DIRECTORIES "${Tramontane_INCLUDE_DIR}"
            INTERFACE_LINK_LIBRARIES "${_tramontane_native}")
    endif()
    if(Tramontane_SHARED_LIBRARY AND NOT TARGET Tramontane::shared)
        add_library(Tramontane::shared SHARED IMPORTED)
        set_target_properties(Tramontane::shared PROPERTIES
            IMPORTED_LOCATION "${Tramontane_SHARED_LIBRARY}"
            INTERFACE_INCLUDE_DIRECTORIES "${Tramontane_INCLUDE_DIR}")
    endif()
    if(NOT TARGET Tramontane::tramontane)
        add_library(Tramontane::tramontane INTERFACE IMPORTED)
        if(_tramontane_lib STREQUAL "Tramontane_STATIC_LIBRARY")
            set_target_properties(Tramontane::tramontane PROPERTIES INTERFACE_LINK_LIBRARIES Tramontane::static)
        else()
            set_target_properties(Tramontane::tramontane PROPERTIES INTERFACE_LINK_LIBRARIES Tramontane::shared)
        endif()
    endif()
endif()
mark_as_advanced(Tramontane_INCLUDE_DIR Tramontane_STATIC_LIBRARY Tramontane_SHARED_LIBRARY)

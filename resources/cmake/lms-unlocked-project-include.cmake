# LM Studio Unlocked: included by CMake right after each project() of llama.cpp (CMAKE_PROJECT_INCLUDE).
# Renames build outputs to the file names of LM Studio's layout, e.g. upstream ggml.dll -> ggml_llamacpp.dll
# on 1.x Windows packs (docs/lmstudio-contract.md §8.1), so that the libraries we build import each other under
# the names LM Studio's kept binaries use, without MinGW's "lib" prefix on Windows.
# -DLMS_UNLOCKED_OUTPUT_NAME_<target>=<name> (dashes as underscores).
if(CMAKE_CURRENT_SOURCE_DIR STREQUAL CMAKE_SOURCE_DIR)
  get_property(_lms_done GLOBAL PROPERTY LMS_UNLOCKED_RENAMES_DEFERRED)
  if(NOT _lms_done)
    set_property(GLOBAL PROPERTY LMS_UNLOCKED_RENAMES_DEFERRED TRUE)
    function(lms_unlocked_rename_outputs)
      get_cmake_property(_vars VARIABLES)
      foreach(_v IN LISTS _vars)
        if(_v MATCHES "^LMS_UNLOCKED_OUTPUT_NAME_(.+)$")
          string(REPLACE "_" "-" _target_dash "${CMAKE_MATCH_1}")
          set(_names "${CMAKE_MATCH_1}" "${_target_dash}")
          list(REMOVE_DUPLICATES _names)
          foreach(_t IN LISTS _names)
            if(TARGET "${_t}")
              set_target_properties("${_t}" PROPERTIES OUTPUT_NAME "${${_v}}")
              if(WIN32)
                # MinGW-style toolchains would call it lib<name>.dll; LM Studio's packs have <name>.dll.
                set_target_properties("${_t}" PROPERTIES PREFIX "" IMPORT_PREFIX "lib")
              endif()
              message(STATUS "lms-unlocked: ${_t} -> ${${_v}}")
            endif()
          endforeach()
        endif()
      endforeach()
    endfunction()
    cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL lms_unlocked_rename_outputs)
  endif()
endif()

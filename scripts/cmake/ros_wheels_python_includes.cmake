# ros_wheels_python_includes.cmake - lets CMake packages build against the ROS 2 PyPI wheels.
#
# Why: the wheels were built in a manylinux container, and the exported CMake targets of every
# message package (<pkg>::<pkg>__rosidl_generator_py) list that container's Python and NumPy
# include directories (/opt/python/cp3XX-cp3XX/...) in INTERFACE_INCLUDE_DIRECTORIES. Those
# directories do not exist here, and CMake stops with "Imported target ... includes non-existent
# path".
#
# How: include this file into the top-level project with
#     cmake -DCMAKE_PROJECT_INCLUDE=<this file> ...
#     colcon build --cmake-args -DCMAKE_PROJECT_INCLUDE=<this file>
# It defers a function to the end of the top-level CMakeLists.txt, when find_package() has created
# the imported targets, and replaces each missing /opt/python/... entry by the include directories
# of the interpreter CMake uses (Python3_EXECUTABLE, else $VIRTUAL_ENV/bin/python3, else python3).
# Installed files stay untouched, so reinstalling a wheel cannot undo the fix.
# Needs CMake >= 3.19 (cmake_language(DEFER)); written by HandyPriors-ROS's scripts/setup_env.sh.
cmake_minimum_required(VERSION 3.19)

function(_handypriors_local_python_includes out_var)
  if(Python3_EXECUTABLE)
    set(_interpreter "${Python3_EXECUTABLE}")
  elseif(DEFINED ENV{VIRTUAL_ENV} AND EXISTS "$ENV{VIRTUAL_ENV}/bin/python3")
    set(_interpreter "$ENV{VIRTUAL_ENV}/bin/python3")
  else()
    find_program(_interpreter NAMES python3 REQUIRED)
  endif()
  execute_process(
    COMMAND "${_interpreter}" -c
      "import sysconfig, numpy; print(sysconfig.get_path('include') + ';' + numpy.get_include(), end='')"
    OUTPUT_VARIABLE _dirs
    RESULT_VARIABLE _status)
  if(NOT _status EQUAL 0 OR NOT _dirs)
    message(FATAL_ERROR "ros_wheels_python_includes: '${_interpreter}' could not report its include "
                        "directories (is numpy installed there?)")
  endif()
  set(${out_var} "${_dirs}" PARENT_SCOPE)
endfunction()

function(_handypriors_repair_wheel_targets)
  get_directory_property(_targets DIRECTORY "${CMAKE_SOURCE_DIR}" IMPORTED_TARGETS)
  set(_local_dirs "")
  set(_repaired 0)
  foreach(_target IN LISTS _targets)
    get_target_property(_dirs "${_target}" INTERFACE_INCLUDE_DIRECTORIES)
    if(NOT _dirs)
      continue()
    endif()
    set(_kept "")
    set(_dropped FALSE)
    foreach(_dir IN LISTS _dirs)
      if(_dir MATCHES "^/opt/python/cp3[0-9]+" AND NOT EXISTS "${_dir}")
        set(_dropped TRUE)
      else()
        list(APPEND _kept "${_dir}")
      endif()
    endforeach()
    if(_dropped)
      if(NOT _local_dirs)
        _handypriors_local_python_includes(_local_dirs)
      endif()
      list(APPEND _kept ${_local_dirs})
      list(REMOVE_DUPLICATES _kept)
      set_property(TARGET "${_target}" PROPERTY INTERFACE_INCLUDE_DIRECTORIES "${_kept}")
      math(EXPR _repaired "${_repaired} + 1")
    endif()
  endforeach()
  message(STATUS "ros_wheels_python_includes: repaired ${_repaired} imported target(s) ${_local_dirs}")
endfunction()

cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL _handypriors_repair_wheel_targets)

# The optional vulkan backend. Included before tapml_lib is defined: it takes the backend's
# sources out of the library's glob and, when Vulkan and glslc (or precompiled SPIR-V) are
# found, puts them back and defines tapml_vulkan_configure(target) to compile the shaders and
# link Vulkan. Without them the build goes on silently without the backend.
#
# TAPML_SPIRV_DIR: a folder of precompiled <shader>.spv.inc files (glslc -mfmt=num output),
# for machines with Vulkan headers but no glslc.
option(TAPML_WITH_VULKAN "Build the vulkan backend when Vulkan and glslc are found" ON)
set(TAPML_SPIRV_DIR "" CACHE PATH "Precompiled SPIR-V (.spv.inc) instead of running glslc")

list(FILTER TAPML_SOURCES EXCLUDE REGEX "/src/backends/vulkan/")
set(TAPML_VULKAN_ENABLED OFF)
set(TAPML_VULKAN_SHADERS embedding rmsnorm matmul rope rope_f64 kv_store attention elementwise)

if(TAPML_WITH_VULKAN)
  find_package(Vulkan QUIET)
  find_program(TAPML_GLSLC glslc)
  if(NOT Vulkan_FOUND)
    message(STATUS "vulkan backend: off (Vulkan headers/loader not found)")
  elseif(NOT TAPML_GLSLC AND NOT TAPML_SPIRV_DIR)
    message(STATUS "vulkan backend: off (glslc not found and no TAPML_SPIRV_DIR)")
  else()
    set(TAPML_VULKAN_ENABLED ON)
    message(STATUS "vulkan backend: on")
    file(GLOB TAPML_VULKAN_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/src/backends/vulkan/*.cpp)
    list(APPEND TAPML_SOURCES ${TAPML_VULKAN_SOURCES})
  endif()
else()
  message(STATUS "vulkan backend: off (TAPML_WITH_VULKAN=OFF)")
endif()

function(tapml_vulkan_configure target)
  set(dir ${CMAKE_BINARY_DIR}/spirv)
  set(src ${CMAKE_SOURCE_DIR}/src/backends/vulkan/shaders)
  set(outputs)
  foreach(name ${TAPML_VULKAN_SHADERS})
    set(out ${dir}/${name}.spv.inc)
    if(TAPML_SPIRV_DIR)
      configure_file(${TAPML_SPIRV_DIR}/${name}.spv.inc ${out} COPYONLY)
    else()
      # rope_f64 is rope.comp with the angle in f64 (for devices with shaderFloat64).
      set(comp ${name})
      set(defs)
      if(name STREQUAL "rope_f64")
        set(comp rope)
        set(defs -DROPE_F64)
      endif()
      add_custom_command(OUTPUT ${out}
        COMMAND ${CMAKE_COMMAND} -E make_directory ${dir}
        COMMAND ${TAPML_GLSLC} --target-env=vulkan1.1 -O ${defs} -mfmt=num
                ${src}/${comp}.comp -o ${out}
        DEPENDS ${src}/${comp}.comp ${src}/common.glsl
        COMMENT "glslc ${name}")
      list(APPEND outputs ${out})
    endif()
  endforeach()
  add_custom_target(tapml_spirv DEPENDS ${outputs})
  add_dependencies(${target} tapml_spirv)
  target_include_directories(${target} PRIVATE ${dir})
  # Vulkan structs are initialized as {sType} and the rest zeroed, on purpose.
  set_source_files_properties(${TAPML_VULKAN_SOURCES} PROPERTIES
                              COMPILE_OPTIONS -Wno-missing-field-initializers)
  target_compile_definitions(${target} PUBLIC TAPML_WITH_VULKAN)
  target_link_libraries(${target} PUBLIC Vulkan::Vulkan)
endfunction()

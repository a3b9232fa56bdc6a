"""Small realistic files, one per language, for ``test_tags`` (line numbers there are 0-based
lines of these strings)."""

from __future__ import annotations

PY_SRC = '''"""Module docs."""
from __future__ import annotations

import os.path
import numpy as np
from ..x.y import p, q as r
from . import m
from helpers import *

try:
    import ujson as json
except ImportError:
    import json
if TYPE_CHECKING:
    from typing import Any

MAX_RETRIES = 3
_TIMEOUT: float = 1.5
lower = 4


@register(
    "store")
class Store(Base, metaclass=Meta):
    """A key-value store.

    Keeps things:
        indented as written.
    """

    # Reads.
    def get(
        self,
        key: str,
    ) -> bytes | None:  # note
        """Return the value."""
        return None

    @property
    async def size(self) -> int:
        def helper():
            pass
        class Local:
            pass
        return 0

    class Meta:
        pass


# Open a connection.
# Second line.
def connect(url: str, *, retries: int = MAX_RETRIES) -> Store:
    import late
    return Store()
'''

JS_SRC = """import React from "./a";
import { a, b as c } from "../b.js";
import * as ns from "./c";
export { x as y } from "./d";
const m = require("./e");
const { k, l: ll } = require("./f");
require("./polyfill");
import "./styles.css";

export class Widget extends Base {
  constructor(el) {
    super(el);
  }
  async render(target) {
    return target;
  }
  onClick = (event) => this.render(event.target);
}

/**
 * Mounts the app.
 * @param {Element} root
 */
export function mount(root) {
  function inner() {}
  return new Widget(root);
}

export const debounce = (fn, ms = 10) => {
  let t;
  return fn;
};

var legacy = function (a) { return a; };
const Panel = class {
  show() {}
};
function* counter(start) { yield start; }
describe("widget", () => {
  function hidden() {}
});
"""

TS_SRC = """import type { T, U } from "./types";
import { Base } from "./base";
export * from "./all";
import _ = require("lodash");

export interface Repo<T> {
  find(id: Id): T | undefined;
}
export type Id = string | number;
enum Color { Red, Green }
namespace Shapes {
  export function area(r: number): number { return r * r; }
}

/** The service. */
@Injectable()
export class Service<T> extends Base implements Repo<T> {
  async load(id: Id): Promise<T | undefined> {
    return undefined;
  }
}
export abstract class Base {
  abstract run(): void;
}
export function parse(text: string): number;
export const fetchAll = async <T>(urls: string[]): Promise<T[]> => [];
"""

TSX_SRC = """import React, { useState } from "react";

interface Props { title: string }

export function Button(props: Props) {
  return <button>{props.title}</button>;
}

export const App = ({ title }: Props) => {
  const [n, setN] = useState(0);
  return <div onClick={() => setN(n + 1)}><Button title={title} /></div>;
};
"""

GO_SRC = """package store

import (
	"context"
	f "fmt"
	"github.com/acme/app/v2/store"
	"github.com/acme/lib/v3"
	_ "embed"
)
import "strings"

const DefaultSize = 10

// DB is the store.
// It is safe for concurrent use.
type DB struct {
	path string
}

type Getter interface {
	Get(ctx context.Context, key string) ([]byte, error)
}

type (
	ID    int64
	Alias = string
)

// Get reads one key.
func (d *DB) Get(ctx context.Context, key string) ([]byte, error) {
	fn := func() {}
	_ = fn
	return nil, nil
}

func (b Box[T]) Put(v T) {}

func Open(path string) (*DB, error) {
	return &DB{path: path}, nil
}
"""

RUST_SRC = """use crate::a::b::{C, D as E, f::{G, self}};
use super::x;
use std::io as sio;
use std::collections::*;
mod foo;

/// A point.
/// In the plane.
#[derive(Debug, Clone)]
pub struct Point {
    x: i32,
    y: i32,
}

pub enum Shape { Circle(f64), Square(f64) }

pub trait Draw {
    fn draw(&self) -> String;
    fn name(&self) -> &str { "shape" }
}

impl Point {
    pub fn new(x: i32, y: i32) -> Self {
        let helper = |v: i32| v * 2;
        fn nested() {}
        Point { x, y }
    }
}

impl Draw for Point {
    fn draw(&self) -> String { String::new() }
}

mod geometry {
    pub fn area(r: f64) -> f64 { r * r }
}

pub const MAX: u32 = 10;
static NAME: &str = "points";
type Grid = Vec<Vec<Point>>;
macro_rules! square { ($x:expr) => { $x * $x }; }

pub fn free<T>(
    a: T,
) -> T
where
    T: Copy,
{
    a
}
"""

JAVA_SRC = """package com.acme.store;

import com.acme.util.Strings;
import java.util.*;
import static com.acme.Util.check;

/**
 * The store.
 */
@Component
public class Store<K> extends Base implements Reader {
  public Store() { Runnable r = () -> {}; }

  /** Reads a key. */
  @Override
  public Optional<K> get(
      String key,
      int flags) {
    return Optional.empty();
  }

  abstract int size();

  record Entry(String key, byte[] value) {}

  enum Mode { READ, WRITE; boolean flag() { return true; } }
}

interface Reader {
  byte[] read(String key);
}
"""

CSHARP_SRC = """using System.Text;
using S = Acme.Util.Strings;
using static System.Math;
namespace Acme.Store;

/// <summary>
/// The database.
/// </summary>
[Serializable]
public sealed class Db : IDb
{
    public Db(string path) { }
    public byte[] Get(string key) => Array.Empty<byte>();
}

public interface IDb { byte[] Get(string key); }
public struct Point { public int X; }
public enum Kind { A, B }
public record Entry(string Key);
"""

C_SRC = """#ifndef DB_H
#define DB_H

#include "util/str.h"
#include <stdio.h>
#include "db_internal.h"

/* Max of two. */
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define DB_SIZE 64

/** Opens the database. */
int db_open(const char *path, int flags);
static char **db_names(void);

struct db_entry {
    int key;
};
enum db_kind { DB_A, DB_B };
typedef struct { int fd; } db_t;
typedef unsigned long db_id;

// Closes it.
void db_close(
    struct db_entry *e,
    int flags)
{
    struct hidden { int x; };
}
#endif
"""

CPP_SRC = """#include "acme/base.hpp"
#include <string>

namespace acme {

/// The store.
template <typename K>
class Store : public Base {
 public:
  Store();
  ~Store();
  virtual std::string get(const std::string& key) const = 0;
  int size() const { return 0; }
  bool operator==(const Store& other) const;
};

enum class Mode { Read, Write };
using Bytes = std::vector<char>;
static int helper(int x) { auto f = [](int y) { return y; }; return f(x); }

}  // namespace acme

bool acme::Store::load(const char* path) { return true; }
"""

RUBY_SRC = """require_relative "lib/store"
require "json"

module Acme
  # The store.
  # Keeps things.
  class Store < Base
    def get(key, default = nil)
      @data.fetch(key, default)
    end

    def self.open(path)
      new(path)
    end

    def empty
    end
  end

  def helper = 1
end

class Models::User
end

def top_level(x)
  x
end
"""

PHP_SRC = """<?php
namespace App\\Http;
use App\\Models\\User;
use App\\Support\\{A, B as C};

/**
 * Handles users.
 */
#[Route("/users")]
final class UserController extends Controller implements Repo
{
    public function __construct(private Db $db) {}

    public function show(int $id): User
    {
        $f = function () { function hidden() {} };
        return new User();
    }
}

interface Repo { public function find(int $id); }
trait Loggable { }
enum Status: string { case Active = 'active'; }

function helper($a) { return $a; }
"""

LUA_SRC = """local store = require("acme.store")
require "acme.setup"

local M = {}

-- Makes one.
function M.new(opts)
  return setmetatable({}, M)
end

function M:get(key)
  local function inner() end
  return self[key]
end

local function helper(x) return x end

M.size = function(self) return 0 end

return M
"""
